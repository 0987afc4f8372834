"""Learning curves from run directories: mean and spread over seeds, one line per algorithm or per run name
(``by``; needs matplotlib)."""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np


def read_metrics(run_dir: str | Path) -> dict[str, np.ndarray]:
    """Columns of ``run_dir/metrics.csv`` as float arrays (missing cells are NaN)."""
    path = Path(run_dir) / "metrics.csv"
    if not path.exists():
        raise FileNotFoundError(f"no metrics.csv in {run_dir}")
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        cols: dict[str, list[float]] = defaultdict(list)
        for row in rows:
            for key, value in row.items():
                cols[key].append(float(value) if value not in ("", None) else np.nan)
    except (ValueError, TypeError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{path} is not a metrics file of this package ({exc})") from None
    if not rows or "env/steps" not in cols:
        raise ValueError(f"{path} has no rows with env/steps (the run logged no iteration yet)")
    return _rename_legacy({k: np.asarray(v) for k, v in cols.items()})


_SECTIONS = ("env", "eval")  # the sections that hold episode metrics


def _rename_legacy(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Columns of runs logged before the episode metrics said what they hold, under today's names.

    Such runs logged an environment metric ``m`` as ``env/m`` (its value at each episode's last step) and
    ``env/episode_m`` (its sum over the episode), and likewise under ``eval/``; they are now ``env/m_last_step`` and
    ``env/m_episode_sum`` (:func:`marl.rollout.episode_metric_names`). A run resumed across the renaming has both:
    the old rows fill the new columns where those are empty.
    """
    out = dict(cols)
    for key in cols:
        section, _, name = key.partition("/")
        base = name.removeprefix("episode_")
        if section not in _SECTIONS or base == name or f"{section}/{base}" not in cols:
            continue  # not a legacy pair (env/episode_length, the mean episode length, has no env/length)
        for old, new in ((key, f"{section}/{base}_episode_sum"), (f"{section}/{base}", f"{section}/{base}_last_step")):
            values = out.pop(old)
            out[new] = np.where(np.isnan(out[new]), values, out[new]) if new in out else values
    return out


def find_metric(cols: dict[str, np.ndarray], metric: str) -> np.ndarray | None:
    """The column ``metric`` of :func:`read_metrics` output, or None; a legacy name (``env/episode_m``: the episode
    sum, ``env/m``: the last step's value; also under ``eval/``) finds its column under today's name."""
    if metric in cols:
        return cols[metric]
    section, _, name = metric.partition("/")
    if section not in _SECTIONS:
        return None
    base = name.removeprefix("episode_")
    return cols.get(f"{section}/{base}_episode_sum" if base != name else f"{metric}_last_step")


def metric_column(cols: dict[str, np.ndarray], metric: str, where: str) -> np.ndarray:
    """:func:`find_metric`, with a ``ValueError`` naming ``where`` and the columns when ``metric`` is absent."""
    column = find_metric(cols, metric)
    if column is None:
        raise ValueError(f"metric {metric!r} not in {where}; columns: {sorted(cols)[:20]} ...")
    return column


GROUP_BY = ("algo", "name")


def run_label(run_dir: str | Path, by: str = "algo") -> str:
    """The curve a run belongs to. ``by="algo"``: its algorithm (from config.json), else its parent directory's
    name. ``by="name"``: its directory's name without a trailing seed suffix ``_s<digits>`` (``runs/matrpo_nav6_beta5_s2``
    -> ``matrpo_nav6_beta5``), so that settings of one algorithm get a curve each."""
    if by not in GROUP_BY:
        raise ValueError(f"by (--by) must be one of {GROUP_BY}, got {by!r}")
    if by == "name":
        return re.sub(r"_s\d+$", "", Path(run_dir).resolve().name)
    cfg = Path(run_dir) / "config.json"
    if cfg.exists():
        try:
            return str(json.loads(cfg.read_text())["algo"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{cfg} is unreadable ({exc!r})") from None
    return Path(run_dir).parent.name


def legend_outside(ax, fontsize: int = 8) -> None:
    """The legend right of the axes, so that long labels never cover the data (save with :func:`save_figure`)."""
    legend = ax.legend(fontsize=fontsize, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    legend.set_in_layout(False)  # tight_layout keeps the axes' size; the saved canvas grows to hold the legend


def save_figure(fig, out: Path) -> None:
    """``fig.tight_layout()`` for the axes, then save with the canvas grown to hold legends placed outside them."""
    fig.tight_layout()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    fig.savefig(out, dpi=120, bbox_inches="tight", bbox_extra_artists=legends)


def plot_learning_curves(run_dirs, out: str | Path, *, metric: str = "env/return", smooth: int = 1,
                         labels=None, title: str | None = None, by: str = "algo") -> Path:
    """Plot ``metric`` against environment steps; runs with the same label are averaged (shaded: ±1 std).

    Parameters
    ----------
    run_dirs : iterable of paths
    out : path of the image to write (PNG, PDF, SVG …)
    metric : a metrics.csv column, e.g. ``env/return`` or ``eval/return`` (greedy evaluations, ``eval_every``); rows
        where it is empty (``eval/*`` between evaluations, an iteration in which no episode ended) are left out
    smooth : moving-average window in logged values of ``metric`` (iterations for ``env/*``; 1 = none)
    labels : optional list of curve labels, one per run directory (default: :func:`run_label` with ``by``)
    title : optional figure title
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if smooth < 1:
        raise ValueError(f"smooth must be >= 1, got {smooth}")
    groups: dict[str, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    run_dirs = list(run_dirs)
    labels = [run_label(d, by) for d in run_dirs] if labels is None else list(labels)
    if len(labels) != len(run_dirs):
        raise ValueError(f"labels must give one label per run directory ({len(run_dirs)}), got {len(labels)}")
    for d, label in zip(run_dirs, labels):
        cols = read_metrics(d)
        column = metric_column(cols, metric, f"{d}/metrics.csv")
        logged = np.isfinite(column)
        if not logged.any():
            raise ValueError(f"metric {metric!r} has no value yet in {d}/metrics.csv")
        y, x = column[logged], cols["env/steps"][logged]
        if smooth > len(y):
            raise ValueError(f"smooth (--smooth) {smooth} is longer than the {len(y)} rows of {d}")
        if smooth > 1:
            y = np.convolve(y, np.ones(smooth) / smooth, mode="valid")
            x = x[len(x) - len(y):]
        groups[label].append((x, y))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, curves in sorted(groups.items()):
        n = min(len(y) for _, y in curves)
        x = curves[0][0][:n]
        ys = np.stack([y[:n] for _, y in curves])
        mean, std = np.nanmean(ys, 0), np.nanstd(ys, 0)
        ax.plot(x, mean, label=f"{label} (n={len(curves)})")
        if len(curves) > 1:
            ax.fill_between(x, mean - std, mean + std, alpha=0.25)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    legend_outside(ax)
    if title:
        ax.set_title(title)
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        save_figure(fig, out)
    except OSError as exc:
        raise ValueError(f"cannot write the plot to {out}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return out


TABLE_METRICS = ("env/return", "env/coverage_distance_episode_sum", "env/collisions_episode_sum")


def summarize_runs(run_dirs, *, at_steps: int, window: int = 1, metrics=TABLE_METRICS, by: str = "algo") -> dict:
    """Per label (:func:`run_label` with ``by``: the algorithm, or the run name without its seed): mean and std over runs of each metric, averaged over the ``window`` iterations that
    end at ``at_steps`` environment steps. Runs that have not reached ``at_steps`` are left out and counted.

    A metric logged only in some rows (``eval/return``: every ``eval_every`` iterations) is averaged over the rows of
    the window that hold it (NaN if none does); choose ``at_steps`` at an evaluation or a ``window`` that spans one.

    Raises
    ------
    ValueError
        ``at_steps`` or ``window`` below 1; ``at_steps`` between two iterations of a run (the message names the
        nearest boundaries); a run with fewer than ``window`` iterations up to ``at_steps``; no run reaching it.
    """
    if at_steps < 1:
        raise ValueError(f"at_steps (--at) must be >= 1 environment steps, got {at_steps}")
    if window < 1:
        raise ValueError(f"window (--window) must be >= 1 iterations, got {window}")
    groups: dict[str, list[dict[str, float]]] = defaultdict(list)
    short: dict[str, int] = defaultdict(int)
    longest = 0.0
    for d in run_dirs:
        cols = read_metrics(d)
        steps = cols["env/steps"]
        longest = max(longest, float(np.nanmax(steps)))
        idx = np.flatnonzero(steps <= at_steps)
        label = run_label(d, by)
        if at_steps > np.nanmax(steps):
            short[label] += 1
            continue
        if not len(idx) or steps[idx[-1]] != at_steps:
            below = int(steps[idx[-1]]) if len(idx) else None
            above = int(steps[np.flatnonzero(steps > at_steps)[0]])
            nearest = " or ".join(str(v) for v in (below, above) if v is not None)
            raise ValueError(f"at_steps (--at) {at_steps} is not an iteration boundary of {d}; nearest: {nearest}")
        if len(idx) < window:
            raise ValueError(f"window (--window) {window} needs {window} iterations up to {at_steps} steps; "
                             f"{d} has {len(idx)}")
        sel = idx[-window:]
        row = {k: float(np.nanmean(c[sel])) for k in metrics for c in [find_metric(cols, k)] if c is not None}
        if "env/coverage_distance_episode_sum" in cols and "env/episode_length" in cols:
            # per-step mean of the coverage distance (sum over landmarks of the nearest agent's distance)
            per_step = cols["env/coverage_distance_episode_sum"][sel] / cols["env/episode_length"][sel]
            row["env/coverage_distance_per_step"] = float(np.nanmean(per_step))
        groups[label].append(row)
    if not groups:
        raise ValueError(f"no run reached at_steps (--at) {at_steps}; the longest has {int(longest)} steps")
    out = {}
    for label, runs in groups.items():
        out[label] = {"runs": len(runs), "short_runs": short.get(label, 0)}
        for k in runs[0]:
            vals = np.array([r[k] for r in runs])
            out[label][k] = (float(vals.mean()), float(vals.std()), [round(v, 1) for v in vals])
    for label in short.keys() - groups.keys():
        out[label] = {"runs": 0, "short_runs": short[label]}
    return out
