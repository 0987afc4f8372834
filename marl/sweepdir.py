"""The files of a sweep's experiment directory: written by :mod:`marl.sweep`, read by it and by :mod:`marl.report`.

Here so that the report reads a sweep directory without importing the sweep (which writes the report at its end).
"""

from __future__ import annotations

import json
from pathlib import Path

MANIFEST_NAME = "experiment.json"  # the experiment: grid, seeds, budget, report settings
DONE_NAME = "done.json"  # in a run directory: the record of a finished run


def read_done(run_dir: Path) -> dict | None:
    """The record ``run_dir/done.json`` of a finished run, or None when the run has not finished."""
    path = run_dir / DONE_NAME
    return json.loads(path.read_text()) if path.exists() else None
