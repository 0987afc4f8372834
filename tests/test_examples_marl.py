"""Smoke test: the hand-assembled MATRPO example runs on a tiny budget and reports finite returns."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_compose_matrpo_example_runs(tmp_path):
    cmd = [sys.executable, str(ROOT / "examples" / "compose_matrpo.py"), "--iterations", "2", "--n-envs", "8",
           "--steps", "100", "--admm-iterations", "6", "--hidden", "16"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("iteration")]
    assert len(lines) == 2
    for line in lines:
        words = line.split()
        assert math.isfinite(float(words[words.index("return") + 1]))
        assert math.isfinite(float(words[words.index("error") + 1]))
