"""The report of a sweep: summary table (Markdown + CSV) and figures (PNG) from an experiment directory.

``python -m marl report DIR`` (and ``python -m marl sweep`` when it ends) reads ``DIR/experiment.json`` and the runs'
``metrics.csv`` and writes into ``DIR/report/``:

- ``summary.md``, ``summary.csv``: one row per cell: the values of the grid axes it ran with (Table III defaults
  filled in), the runs counted, the final performance (mean ± std over seeds), the final consensus error and the
  floats each agent sent;
- ``curves.png`` (or ``curves_<panel>.png`` per panel value): learning curves, mean and ±1 std over seeds (Figs. 3, 4);
- ``final_vs_<axis>.png``: final performance against each grid axis, one series per value of the other axes (Fig. 5);
- ``final_vs_floats.png``: final performance against the floats each agent sent over its run (not in the paper).

Definitions
-----------
Final performance (paper Fig. 5: "returns of the last 100 episodes"). metrics.csv holds, per outer iteration k, the
mean ``R_k`` of the report metric over the ``n_k`` episodes that ended in it (``env/episodes``; for an ``eval/*``
metric such as ``eval/return``, the greedy episodes of the evaluation logged in it, ``eval/episodes``, and ``n_k = 0``
in the rows between evaluations). Walking back from the
last iteration, iterations are taken whole until the next would pass ``E`` = ``final_episodes`` (100) episodes; the
first iteration reached that is needed only in part contributes the missing ``m`` episodes at its mean::

    final = (sum_{k > k0} n_k R_k + m R_k0) / E,          m = E - sum_{k > k0} n_k            (1)

(episode-level returns are not logged; with the paper's settings, 10 envs x 1,000 steps and 100-step episodes, an
iteration ends exactly 100 episodes and (1) is the last iteration's mean). A run with fewer than E episodes uses all.
Mean ± std over seeds use the population std (ddof = 0), as ``python -m marl table`` does.

Floats sent per agent: the sum over iterations of every ``comm/floats_*`` total column (the consensus exchanges,
``comm/floats_sent_total``, and the advantage-normalisation consensus, ``comm/floats_adv_norm``) divided by N.
Algorithms without these columns (I-TRPO, C-TRPO) are left out of that figure. Consensus error: the mean of
``admm/consensus_error`` over the iterations that (1) uses.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from .checkpoint import atomic_write_bytes
from .plotting import legend_outside, metric_column, read_metrics, save_figure
from .sweepdir import MANIFEST_NAME, read_done

REPORT_DIR = "report"


def final_performance(values, episodes, final_episodes: int = 100) -> tuple[float, list[int]]:
    """Mean of ``values`` over the last ``final_episodes`` episodes, eq. (1) of the module docstring.

    Parameters
    ----------
    values : (K,) per-iteration means of the metric (NaN where no episode ended)
    episodes : (K,) episodes that ended in each iteration
    final_episodes : E

    Returns
    -------
    (final, iterations used, oldest first); ``(nan, [])`` when no episode ended.

    Example
    -------
    >>> final_performance([1.0, 2.0, 3.0], [40, 40, 40])[0]  # (40*3 + 40*2 + 20*1) / 100
    2.2
    """
    if final_episodes < 1:
        raise ValueError(f"final_episodes must be >= 1, got {final_episodes}")
    total, need, used = 0.0, final_episodes, []
    for k in range(len(values) - 1, -1, -1):
        n = episodes[k]
        if not n > 0 or not math.isfinite(values[k]):
            continue
        take = min(int(n), need)
        total += take * float(values[k])
        need -= take
        used.append(k)
        if need == 0:
            break
    covered = final_episodes - need
    return (total / covered if covered else float("nan")), used[::-1]


def run_summary(run_dir: str | Path, *, metric: str, final_episodes: int, n_agents: int) -> dict:
    """Final performance, consensus error and communication of one run (see the module docstring)."""
    cols = read_metrics(run_dir)
    values = metric_column(cols, metric, f"{run_dir}/metrics.csv (report.metric)")
    # eval/* metrics average the evaluation's own episodes; every other metric is per training episode
    count = "eval/episodes" if metric.startswith("eval/") else "env/episodes"
    episodes = cols.get(count, np.zeros(len(values)))  # absent when no episode ever ended
    final, used = final_performance(values, episodes, final_episodes)
    out = {"final": final, "env_steps": float(cols["env/steps"][-1]), "iterations": len(cols["env/steps"])}
    if "admm/consensus_error" in cols and used:
        out["consensus_error"] = float(np.nanmean(cols["admm/consensus_error"][used]))
    comm = [k for k in cols if re.fullmatch(r"comm/floats_(sent_total|(?!sent_agent_).*)", k)]
    if comm:
        per_iter = sum(np.nan_to_num(cols[k]) for k in comm) / n_agents
        out["floats_per_agent"] = float(per_iter.sum())
        out["floats_per_agent_per_iter"] = float(per_iter.mean())
    return out


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std())


def _value(v) -> str:
    return ",".join(str(x) for x in v) if isinstance(v, list) else str(v)


def summarize_sweep(exp_dir: str | Path, *, partial: bool = False) -> tuple[dict, list[dict]]:
    """(manifest, one row per cell): the numbers of ``summary.csv``.

    Runs count when done (``done.json`` with the planned steps); with ``partial`` also runs still under way.
    """
    exp_dir = Path(exp_dir)
    path = exp_dir / MANIFEST_NAME
    if not path.exists():
        raise FileNotFoundError(f"no {MANIFEST_NAME} in {exp_dir}: not an experiment directory of python -m marl sweep")
    manifest = json.loads(path.read_text())
    spec = manifest["report"]
    rows = []
    for cell in manifest["cells"]:
        per_seed = {}
        for seed in manifest["seeds"]:
            run_dir = exp_dir / "runs" / cell["name"] / f"seed_{seed}"
            done = read_done(run_dir)
            finished = done is not None and done["env_steps"] >= manifest["steps"]
            if finished or (partial and (run_dir / "metrics.csv").exists()):
                per_seed[seed] = run_summary(run_dir, metric=spec["metric"], final_episodes=spec["final_episodes"],
                                             n_agents=cell["n_agents"])
        row = {"cell": cell["name"], **{a: cell["resolved"][a] for a in manifest["axes"]},
               "algo": cell["algo"], "n_agents": cell["n_agents"], "runs": len(per_seed),
               "seeds": " ".join(str(s) for s in per_seed)}
        finals = [r["final"] for r in per_seed.values()]
        row["final_mean"], row["final_std"] = _mean_std(finals)
        row["final_per_seed"] = " ".join(f"{v:.6g}" for v in finals)
        for key in ("consensus_error", "floats_per_agent", "floats_per_agent_per_iter", "env_steps"):
            vals = [r[key] for r in per_seed.values() if key in r]
            row[f"{key}_mean"], row[f"{key}_std"] = _mean_std(vals) if vals else (float("nan"), float("nan"))
        rows.append(row)
    return manifest, rows


def _markdown(manifest: dict, rows: list[dict]) -> str:
    spec = manifest["report"]
    axes = manifest["axes"]
    lines = [f"# {manifest['name']}", ""]
    if manifest.get("description"):
        lines += [manifest["description"], ""]
    lines += [
        f"Experiment file `{manifest['file']}`; budget {manifest['steps']:,} environment steps per run, seeds "
        f"{manifest['seeds']}. Final performance: mean `{spec['metric']}` over the last {spec['final_episodes']} "
        "episodes of each run; mean ± std (ddof 0) over the runs counted. Floats: sent per agent over the whole run "
        "(comm/ metrics; '-' for algorithms that do not communicate). A value in parentheses is not set by the cell's "
        "grid: the base configuration's (or the task's Table III value).", "",
        "| " + " | ".join(axes + ["runs", f"final {spec['metric']}", "consensus error", "floats / agent"]) + " |",
        "|" + "---|" * (len(axes) + 4),
    ]

    def pm(m, s, fmt):
        return "-" if not math.isfinite(m) else f"{m:{fmt}} ± {s:{fmt}}"

    for cell, r in zip(manifest["cells"], rows):
        cells = [_value(r[a]) if a in cell["params"] else f"({_value(r[a])})" for a in axes]
        cells += [f"{r['runs']}/{len(manifest['seeds'])}", pm(r["final_mean"], r["final_std"], ".4g"),
                  pm(r["consensus_error_mean"], r["consensus_error_std"], ".3g"),
                  pm(r["floats_per_agent_mean"], r["floats_per_agent_std"], ".4g")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _value(v) if isinstance(v, list) else v for k, v in r.items()})
    return buf.getvalue()


def _series_label(params: dict, axes: list[str]) -> str:
    return ", ".join(f"{a}={_value(params[a])}" for a in axes if a in params) or "all"


def _varying(manifest: dict, cells: list[dict] | None = None) -> list[str]:
    """The grid axes that tell ``cells`` apart: an axis with one value in every cell is left out of the labels."""
    cells = manifest["cells"] if cells is None else cells
    varying = []
    for axis in manifest["axes"]:
        having = [c for c in cells if axis in c["params"]]
        if len({json.dumps(c["params"][axis]) for c in having}) > 1 or 0 < len(having) < len(cells):
            varying.append(axis)
    return varying


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_")[:120]


def _panel_groups(manifest: dict, cells: list[dict]) -> dict[str, list[dict]]:
    panels = manifest["report"]["panels"]
    groups: dict[str, list[dict]] = defaultdict(list)
    for cell in cells:
        groups[_series_label(cell["params"], panels) if panels else ""].append(cell)
    return groups


def _plot_curves(exp_dir: Path, out_dir: Path, manifest: dict, rows: list[dict]) -> list[Path]:
    from .plotting import plot_learning_curves

    spec, panels = manifest["report"], manifest["report"]["panels"]
    counted = {r["cell"]: r["seeds"].split() for r in rows}
    files = []
    for panel, cells in _panel_groups(manifest, manifest["cells"]).items():
        dirs, labels, seen = [], [], set()
        axes = [a for a in _varying(manifest, cells) if a not in panels]
        for cell in cells:
            if cell["name"] in seen:  # cells that share a run are one curve
                continue
            seen.add(cell["name"])
            for seed in counted[cell["name"]]:
                dirs.append(exp_dir / "runs" / cell["name"] / f"seed_{seed}")
                labels.append(_series_label(cell["params"], axes))
        if dirs:
            values = "_".join(_value(cells[0]["params"][a]) for a in panels)
            name = f"curves_{_slug(values)}.png" if panel else "curves.png"
            files.append(plot_learning_curves(dirs, out_dir / name, metric=spec["metric"], smooth=spec["smooth"],
                                              labels=labels, title=panel or manifest["name"]))
    return files


def _panel_figure(n_panels: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axs = plt.subplots(1, n_panels, figsize=(4.8 * n_panels, 4.0), squeeze=False)
    return plt, fig, axs[0]


def _save(plt, fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path)
    plt.close(fig)
    return path


def _plot_sensitivity(out_dir: Path, manifest: dict, rows: list[dict]) -> list[Path]:
    """Final performance against each grid axis (not a panel axis), one series per value of the other axes."""
    metric, panels = manifest["report"]["metric"], manifest["report"]["panels"]
    by_cell = list(zip(manifest["cells"], rows))
    files = []
    for axis in [a for a in manifest["axes"] if a not in panels]:
        having = [(c, r) for c, r in by_cell if axis in c["params"] and r["runs"]]
        if len({json.dumps(c["params"][axis]) for c, _ in having}) < 2:
            continue
        groups = defaultdict(list)
        for c, r in having:
            groups[_series_label(c["params"], panels) if panels else ""].append((c, r))
        plt, fig, axs = _panel_figure(len(groups))
        for ax, (panel, items) in zip(axs, sorted(groups.items())):
            series = defaultdict(list)
            others = [a for a in _varying(manifest, [c for c, _ in items]) if a != axis and a not in panels]
            for c, r in items:
                series[_series_label(c["params"], others)].append((c["params"][axis], r))
            numeric = all(isinstance(c["params"][axis], (int, float)) and not isinstance(c["params"][axis], bool)
                          for c, _ in items)
            for label, points in sorted(series.items()):
                points.sort(key=lambda p: p[0] if numeric else 0)
                x = [p[0] if numeric else _value(p[0]) for p in points]
                ax.errorbar(x, [p[1]["final_mean"] for p in points], yerr=[p[1]["final_std"] for p in points],
                            marker="o", capsize=3, label=label, linestyle="-" if numeric else "none")
            xs = [c["params"][axis] for c, _ in items]
            if numeric and min(xs) > 0 and max(xs) / min(xs) >= 20:
                ax.set_xscale("log")
            ax.set_xlabel(axis)
            ax.set_ylabel(f"final {metric} (last {manifest['report']['final_episodes']} episodes)")
            ax.set_title(panel or manifest["name"])
            ax.grid(alpha=0.3)
            if len(series) > 1 or "all" not in series:
                legend_outside(ax)
        files.append(_save(plt, fig, out_dir / f"final_vs_{_slug(axis)}.png"))
    return files


def _point_style(i: int) -> tuple[str, str]:
    """Colour and marker of the i-th point: matplotlib's 10 colours repeat, so each pass through them takes the
    next marker and no two of up to 50 cells look alike (Fig. 5's floats panel has 13)."""
    return f"C{i % 10}", "osD^v"[(i // 10) % 5]


def _plot_communication(out_dir: Path, manifest: dict, rows: list[dict]) -> list[Path]:
    """Final performance against floats sent per agent (total over the run), one point per cell (±1 std)."""
    metric, panels = manifest["report"]["metric"], manifest["report"]["panels"]
    items = [(c, r) for c, r in zip(manifest["cells"], rows) if r["runs"] and math.isfinite(r["floats_per_agent_mean"])]
    if not items:
        return []
    groups = defaultdict(list)
    seen = set()
    for c, r in items:
        if c["name"] not in seen:
            seen.add(c["name"])
            groups[_series_label(c["params"], panels) if panels else ""].append((c, r))
    plt, fig, axs = _panel_figure(len(groups))
    for ax, (panel, points) in zip(axs, sorted(groups.items())):
        others = [a for a in _varying(manifest, [c for c, _ in points]) if a not in panels]
        for i, (c, r) in enumerate(points):
            color, marker = _point_style(i)
            ax.errorbar(r["floats_per_agent_mean"], r["final_mean"], xerr=r["floats_per_agent_std"],
                        yerr=r["final_std"], color=color, marker=marker, capsize=3,
                        label=_series_label(c["params"], others))
        xs = [r["floats_per_agent_mean"] for _, r in points]
        if min(xs) > 0 and max(xs) / min(xs) >= 20:
            ax.set_xscale("log")
        else:  # a narrow range on a log axis gets unreadable minor-tick labels
            from matplotlib.ticker import EngFormatter

            ax.xaxis.set_major_formatter(EngFormatter())  # 100M, 150M: no offset text
            if max(xs) - min(xs) <= 0.05 * max(abs(v) for v in xs):  # (nearly) equal volumes: centre them
                ax.set_xlim(0.9 * min(xs), 1.1 * max(xs))
        ax.set_xlabel("floats sent per agent over the run")
        ax.set_ylabel(f"final {metric}")
        ax.set_title(panel or manifest["name"])
        ax.grid(alpha=0.3)
        legend_outside(ax, fontsize=7)
    return [_save(plt, fig, out_dir / "final_vs_floats.png")]


def write_report(exp_dir: str | Path, *, out: str | Path | None = None, partial: bool = False) -> tuple[Path, ...]:
    """Write ``summary.md``, ``summary.csv`` and the PNG figures of an experiment directory; returns the paths.

    Figures need matplotlib (``pip install -e ".[plot]"``); without it only the tables are written.
    """
    exp_dir = Path(exp_dir)
    manifest, rows = summarize_sweep(exp_dir, partial=partial)
    out_dir = Path(out) if out is not None else exp_dir / REPORT_DIR
    files = [out_dir / "summary.md", out_dir / "summary.csv"]
    atomic_write_bytes(files[0], _markdown(manifest, rows).encode())
    atomic_write_bytes(files[1], _csv(rows).encode())
    if not any(r["runs"] for r in rows):
        return tuple(files)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return tuple(files)
    spec = manifest["report"]
    if spec["curves"]:
        files += _plot_curves(exp_dir, out_dir, manifest, rows)
    if spec["sensitivity"]:
        files += _plot_sensitivity(out_dir, manifest, rows)
    if spec["communication"]:
        files += _plot_communication(out_dir, manifest, rows)
    return tuple(files)
