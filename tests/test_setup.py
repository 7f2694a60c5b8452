"""The set-up script: a user who is not root gets the exact apt command and nothing changes."""
import os
import shutil
import subprocess

import pytest

from tests.helpers import REPO


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None,
                    reason="needs root to run the script as an unprivileged user")
def test_non_root_user_gets_the_apt_command(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "TESTBED_APT_PKGS": "gnuradio testbed-no-such-package",
           "TESTBED_VENV": str(tmp_path / "venv"), "HOME": str(tmp_path)}
    p = subprocess.run([shutil.which("runuser"), "-u", "nobody", "--", "bash", str(REPO / "scripts" / "setup.sh")],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 1
    assert "missing Debian packages: testbed-no-such-package" in p.stderr
    assert "apt-get install -y testbed-no-such-package" in p.stderr
    assert not (tmp_path / "venv").exists()


def _setup_stamp_matches() -> bool:
    import hashlib

    want = hashlib.sha256((REPO / "setup.cfg").read_bytes() + (REPO / "pyproject.toml").read_bytes()).hexdigest()
    stamp = REPO / ".venv" / ".testbed-setup-stamp"
    return stamp.exists() and stamp.read_text().strip() == want


@pytest.mark.skipif(not _setup_stamp_matches(),
                    reason="setup.cfg/pyproject.toml changed since the last ./scripts/setup.sh: running it here "
                           "would install packages (./scripts/test.sh runs it first)")
def test_setup_is_idempotent_when_everything_is_present():
    p = subprocess.run(["bash", str(REPO / "scripts" / "setup.sh")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "installing" not in p.stderr  # nothing to do on a set-up machine
