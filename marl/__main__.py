"""Command line: ``python -m marl {train,eval,plot}``.

Examples::

    python -m marl train                                   # MATRPO, Cooperative Navigation N=3, paper settings
    python -m marl train --algo itrpo --steps 2000000 --seed 1 --out runs/itrpo_s1
    python -m marl train --config my.toml --set admm.edge_order=cyclic --set trpo.max_kl=0.002
    python -m marl train --resume runs/matrpo_s0           # continue a killed run
    python -m marl train --env mpe2.simple_spread_v3 --set env.kwargs.N=3 --set env.kwargs.max_cycles=25   # any PettingZoo env
    python -m marl train --set eval_every=10               # + greedy evaluation every 10 iterations (eval/*)
    python -m marl eval runs/matrpo_s0 --episodes 50 --gif spread.gif
    python -m marl eval runs/matrpo_s0 --greedy            # each policy's mode instead of sampled actions
    python -m marl plot runs/matrpo_s* runs/itrpo_s* -o curves.png
    python -m marl table runs/matrpo_s* runs/itrpo_s* --at 500000
    python -m marl plot runs/matrpo_nav6_s* runs/matrpo_nav6_beta5_s* --by name -o n6.png   # one curve per setting
    python -m marl sweep experiments/fig3a.toml --steps 500000 --seeds 0-2 --jobs 2   # a figure as one command
    python -m marl report runs/fig3a                       # summary.md/.csv and PNG figures in runs/fig3a/report
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from pathlib import Path

from .config import ALGORITHMS, ENVIRONMENTS, TrainConfig, apply_overrides, load_config
from .plotting import GROUP_BY


def _train_config(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    """The configuration the flags ask for: ``--config`` (else ``base``, else the defaults) with the flags applied."""
    config = load_config(args.config) if args.config else base or TrainConfig()
    env_changes = {}
    if args.env is not None:
        env_changes["name"] = args.env
    if args.n_agents is not None:
        env_changes["n_agents"] = args.n_agents
    elif args.env == "treasure_collection" and config.env.name != "treasure_collection":
        env_changes["n_agents"] = 8  # the paper's smaller treasure team (6 hunters + 2 banks)
    if env_changes:
        config = dataclasses.replace(config, env=dataclasses.replace(config.env, **env_changes))
    top = {}
    if args.algo is not None:
        top["algo"] = args.algo
    if args.steps is not None:
        top["total_steps"] = args.steps
    if args.seed is not None:
        top["seed"] = args.seed
    if top:
        config = dataclasses.replace(config, **top)
    return apply_overrides(config, args.set or [])


def _cmd_train(args: argparse.Namespace) -> int:
    from .rundir import load_run_config
    from .train import train

    run = train
    if args.backend == "mpi":  # one process per agent (marl.distributed); the agents' ranks return None
        from .distributed import train_mpi as run

    if args.out is not None and not args.out.strip():
        raise ValueError("--out must be a non-empty path")
    if args.resume is not None:
        if not args.resume.strip():
            raise ValueError("--resume must be a non-empty path")
        out = Path(args.resume)
        if args.out is not None and Path(args.out).resolve() != out.resolve():
            raise ValueError(f"--out {args.out} and --resume {args.resume} name different run directories")
        saved = load_run_config(out)
        # What the flags ask for, on top of the saved settings; train() refuses any that changes the run.
        config = _train_config(args, base=saved)
        if args.steps is None:
            config = dataclasses.replace(config, total_steps=saved.total_steps)
    else:
        config = _train_config(args)
        out = Path(args.out) if args.out else Path("runs") / f"{config.algo}_{config.env.name}_n{config.env.n_agents}_s{config.seed}"
    if args.backend == "mpi":
        from .distributed import launch, under_mpi_launcher

        if not under_mpi_launcher():  # start mpiexec -n N+1 ourselves, to name an agent process that is lost
            return launch(args.argv, config.env.n_agents, out)
    result = run(config, out, resume=bool(args.resume), progress=not args.no_progress)
    if result is None:
        return 0
    last = {k: v for k, v in result.final_metrics.items() if k.startswith(("env/return", "env/coverage", "env/coll"))}
    print(json.dumps({"run_dir": str(result.run_dir), "iterations": result.iterations, "env_steps": result.env_steps,
                      "seconds": round(result.seconds, 1), **last}, indent=2))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import evaluate

    print(json.dumps(evaluate(args.run_dir, episodes=args.episodes, seed=args.seed, gif=args.gif,
                              greedy=args.greedy), indent=2))
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from .plotting import plot_learning_curves

    out = plot_learning_curves(args.run_dirs, args.output, metric=args.metric, smooth=args.smooth, by=args.by)
    print(out)
    return 0


def _cmd_table(args: argparse.Namespace) -> int:
    from .plotting import TABLE_METRICS, summarize_runs

    metrics = tuple(args.metric) if args.metric else TABLE_METRICS
    print(json.dumps(summarize_runs(args.run_dirs, at_steps=args.at, window=args.window, metrics=metrics, by=args.by),
                     indent=2))
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import load_experiment, parse_seeds, sweep

    seeds = parse_seeds(args.seeds) if args.seeds else None
    if args.dry_run:
        exp = load_experiment(args.file, steps=args.steps, seeds=seeds)
        names = list(dict.fromkeys(c.name for c in exp.cells))  # cells with the same configuration share a run
        print("\n".join(names))
        print(f"{len(exp.runs)} runs ({len(names)} distinct of {len(exp.cells)} cells x {len(exp.seeds)} seeds) "
              f"of {exp.steps} steps")
        return 0
    try:
        result = sweep(args.file, out=args.out, jobs=args.jobs, steps=args.steps, seeds=seeds, threads=args.threads,
                       backend=args.backend, address=args.address, progress=not args.no_progress,
                       report=not args.no_report)
    except KeyboardInterrupt:  # the sweep has stopped its workers and said how to continue
        return 130
    print(json.dumps({"experiment_dir": str(result.exp_dir), "runs_done": len(result.done),
                      "failed": list(result.failed), "busy": list(result.busy),
                      "report": [str(p) for p in result.report]}, indent=2))
    return 1 if result.failed else 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    for path in write_report(args.exp_dir, out=args.out, partial=args.partial):
        print(path)
    return 0


BY_HELP = ("what makes runs one curve or row: 'algo' (the algorithm, default) or 'name' (the run directory's name "
           "without its _s<seed> suffix, so settings of one algorithm stay apart)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m marl", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train an algorithm (defaults: MATRPO on Cooperative Navigation N=3)")
    t.add_argument("--algo", choices=ALGORITHMS)
    t.add_argument("--env", help=f"one of {', '.join(ENVIRONMENTS)}, or the module path of any PettingZoo environment "
                                 "with a parallel_env factory, e.g. mpe2.simple_spread_v3 (its options: "
                                 "--set env.kwargs.N=3 ...)")
    t.add_argument("--n-agents", type=int)
    t.add_argument("--steps", type=int, help="total environment steps")
    t.add_argument("--seed", type=int)
    t.add_argument("--out", help="run directory (default runs/<algo>_<env>_n<N>_s<seed>)")
    t.add_argument("--config", help="TOML/YAML/JSON config file (unknown keys are rejected)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override, e.g. admm.penalty=5 or steps_per_iter=5000 (repeatable)")
    t.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--backend", choices=("inprocess", "mpi"), default="inprocess",
                   help="mpi: one process per agent plus a world process (mpiexec -n N+1 python -m marl train ...; "
                        "without mpiexec it starts one itself)")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("eval", help="evaluate a run's policies")
    e.add_argument("run_dir")
    e.add_argument("--episodes", type=int, default=20)
    e.add_argument("--seed", type=int, default=12345)
    e.add_argument("--gif", help="also write one episode as a GIF to this path")
    e.add_argument("--greedy", action="store_true",
                   help="take each policy's most probable action (default: sample, as the original code tests)")
    e.set_defaults(func=_cmd_eval)

    p = sub.add_parser("plot", help="learning curves (mean and spread over seeds)")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("-o", "--output", default="curves.png")
    p.add_argument("--metric", default="env/return", help="a metrics.csv column, e.g. eval/return")
    p.add_argument("--smooth", type=int, default=1)
    p.add_argument("--by", choices=GROUP_BY, default="algo", help=BY_HELP)
    p.set_defaults(func=_cmd_plot)

    s = sub.add_parser("table", help="mean and spread over seeds of return, coverage and collisions at a step count")
    s.add_argument("run_dirs", nargs="+")
    s.add_argument("--at", type=int, required=True, help="environment steps (must end an iteration)")
    s.add_argument("--window", type=int, default=1, help="iterations averaged, ending at --at")
    s.add_argument("--metric", action="append", metavar="KEY",
                   help="a metrics.csv column to tabulate instead of return, coverage and collisions, e.g. eval/return "
                        "(repeatable)")
    s.add_argument("--by", choices=GROUP_BY, default="algo", help=BY_HELP)
    s.set_defaults(func=_cmd_table)

    w = sub.add_parser("sweep", help="run an experiment file: every grid cell x seed, in parallel, resumable")
    w.add_argument("file", help="TOML experiment file (see experiments/ and marl/sweep.py)")
    w.add_argument("--out", help="experiment directory (default runs/<experiment name>)")
    w.add_argument("--jobs", type=int, help="runs at once (local default: CPUs available)")
    w.add_argument("--steps", type=int, help="environment steps per run (overrides the file's paper budget)")
    w.add_argument("--seeds", help="seeds, e.g. 0,1,2 or 0-2 (overrides the file's)")
    w.add_argument("--threads", type=int, help="torch threads per run (local default: CPUs // jobs; ray: 1)")
    w.add_argument("--backend", choices=("local", "ray"), default="local")
    w.add_argument("--address", help="Ray cluster address (--backend ray; default: a local Ray instance)")
    w.add_argument("--dry-run", action="store_true", help="list the cells and runs, run nothing")
    w.add_argument("--no-progress", action="store_true", help="no progress bar (per-run lines only)")
    w.add_argument("--no-report", action="store_true", help="do not write the report when the sweep ends")
    w.set_defaults(func=_cmd_sweep)

    r = sub.add_parser("report", help="summary table (Markdown, CSV) and PNG figures of a sweep directory")
    r.add_argument("exp_dir")
    r.add_argument("--out", help="output folder (default EXP_DIR/report)")
    r.add_argument("--partial", action="store_true", help="also count runs that have not finished")
    r.set_defaults(func=_cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand. Bad input (a setting, a path, a run directory) and a run that cannot go on (directory in
    use, training diverged) print one line ``error: ...`` to stderr and return 2; argparse does the same for flags."""
    from .checkpoint import RunError

    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what --backend mpi relaunches under mpiexec
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning(warnings.showwarning)
        try:
            return args.func(args)
        except (ValueError, OSError, RunError) as exc:
            print(f"error: {_one_line(exc)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            return 130


def _show_warning(default):
    """Deprecations addressed to the user (FutureWarning: an old config key) as one line ``warning: ...``."""

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, FutureWarning):
            print(f"warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    return show


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}"
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
