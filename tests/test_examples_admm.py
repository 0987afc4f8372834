"""Smoke test: the consensus_admm example (the README's main command) runs and saves its plot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_sensor_network_lasso_example(tmp_path):
    out = tmp_path / "residuals.png"
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "sensor_network_lasso.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "[sync] solved" in proc.stdout
    assert "[async, 20% messages lost] solved" in proc.stdout
    assert out.exists() and out.stat().st_size > 10_000
    assert not (tmp_path / "sensor_network_residuals.png").exists()
