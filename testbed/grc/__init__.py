"""GRC block definitions of the testbed (``*.block.yml``). Point GRC at this folder:
``export GRC_BLOCKS_PATH=$(testbed grc-path)``."""
from pathlib import Path

BLOCKS_DIR = Path(__file__).resolve().parent
