"""The Makefile's virtual environment on a fresh machine: an interpreter older than 3.11 is refused
in one line, and a venv whose creation failed is removed, so that the user's retry starts afresh
(it used to be reused, broken, by every later `make`). Stand-in interpreters keep this offline."""

import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")

# Python 3.11 reporting itself as 3.10 to the code it runs with -c.
PY310 = f"""#!/bin/sh
[ "$1" = "-c" ] || {{ echo "stand-in 3.10: $*" >&2; exit 1; }}
exec {sys.executable} -c 'import sys; sys.version_info = (3, 10, 13, "final", 0); exec(sys.argv[1])' "$2"
"""
# Python 3.11 without ensurepip (Debian without python3.11-venv): `-m venv` leaves a half venv.
NO_ENSUREPIP = f"""#!/bin/sh
case "$1" in
  -c) exec {sys.executable} "$@" ;;
  -m) mkdir -p "$3/bin" && ln -s {sys.executable} "$3/bin/python"
      echo "Error: Command '[..., '-m', 'ensurepip', ...]' returned non-zero exit status 1." >&2
      exit 1 ;;
esac
exit 1
"""


def make(*args):
    return subprocess.run(["make", "-C", str(ROOT), "--no-print-directory", "install", *args],
                          capture_output=True, text=True, timeout=60)


def stand_in(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o755)
    return path


def test_python_older_than_311_is_refused_before_a_venv_exists(tmp_path):
    venv = tmp_path / "venv"
    result = make(f"PYTHON={stand_in(tmp_path, 'python3.10', PY310)}", f"VENV={venv}")
    assert result.returncode != 0
    assert "keras_seq needs Python >= 3.11" in result.stderr
    assert "is 3.10: run make with PYTHON=python3.11" in result.stderr
    assert "Traceback" not in result.stderr
    assert not venv.exists()


def test_failed_venv_creation_leaves_nothing_to_reuse(tmp_path):
    venv = tmp_path / "venv"
    result = make(f"PYTHON={stand_in(tmp_path, 'python3', NO_ENSUREPIP)}", f"VENV={venv}")
    assert result.returncode != 0
    assert "ensurepip" in result.stderr
    assert not venv.exists()  # the next `make` creates it again instead of using a venv without pip


def test_an_existing_venv_older_than_311_is_named_not_installed_into(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    stand_in(venv / "bin", "python", PY310)
    result = make(f"VENV={venv}")
    assert result.returncode != 0
    assert "is 3.10: remove it with make clean" in result.stderr
    assert "stand-in 3.10" not in result.stderr  # pip was never run with it
