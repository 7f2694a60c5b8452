"""Hardware-in-the-loop SDR testbed for agentic semantic communications."""

__version__ = "0.1.0"
