"""Command line: ``python -m marl {train,eval,plot}``.

Examples::

    python -m marl train                                   # MATRPO, Cooperative Navigation N=3, paper settings
    python -m marl train --algo itrpo --steps 2000000 --seed 1 --out runs/itrpo_s1
    python -m marl train --config my.toml --set admm.edge_order=cyclic --set trpo.max_kl=0.002
    python -m marl train --resume runs/matrpo_s0           # continue a killed run
    python -m marl eval runs/matrpo_s0 --episodes 50 --gif spread.gif
    python -m marl plot runs/matrpo_s* runs/itrpo_s* -o curves.png
    python -m marl table runs/matrpo_s* runs/itrpo_s* --at 500000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from .config import ALGORITHMS, ENVIRONMENTS, TrainConfig, apply_overrides, load_config


def _train_config(args: argparse.Namespace) -> TrainConfig:
    config = load_config(args.config) if args.config else TrainConfig()
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
    from .train import train

    run = train
    if args.backend == "mpi":  # one process per agent (marl.distributed); the agents' ranks return None
        from .distributed import train_mpi as run

    if args.resume:
        out = Path(args.resume)
        config = TrainConfig(total_steps=args.steps) if args.steps else TrainConfig(total_steps=1)
    else:
        config = _train_config(args)
        out = Path(args.out) if args.out else Path("runs") / f"{config.algo}_{config.env.name}_n{config.env.n_agents}_s{config.seed}"
    if args.backend == "mpi":
        from .distributed import launch, under_mpi_launcher

        if not under_mpi_launcher():  # start mpiexec -n N+1 ourselves, to name an agent process that is lost
            from .train import load_run_config

            n_agents = (load_run_config(out) if args.resume else config).env.n_agents
            return launch(args.argv, n_agents, out)
    result = run(config, out, resume=bool(args.resume), progress=not args.no_progress)
    if result is None:
        return 0
    last = {k: v for k, v in result.final_metrics.items() if k.startswith(("env/return", "env/coverage", "env/coll"))}
    print(json.dumps({"run_dir": str(result.run_dir), "iterations": result.iterations, "env_steps": result.env_steps,
                      "seconds": round(result.seconds, 1), **last}, indent=2))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import evaluate

    print(json.dumps(evaluate(args.run_dir, episodes=args.episodes, seed=args.seed, gif=args.gif), indent=2))
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from .plotting import plot_learning_curves

    out = plot_learning_curves(args.run_dirs, args.output, metric=args.metric, smooth=args.smooth)
    print(out)
    return 0


def _cmd_table(args: argparse.Namespace) -> int:
    from .plotting import summarize_runs

    print(json.dumps(summarize_runs(args.run_dirs, at_steps=args.at, window=args.window), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m marl", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train an algorithm (defaults: MATRPO on Cooperative Navigation N=3)")
    t.add_argument("--algo", choices=ALGORITHMS)
    t.add_argument("--env", choices=ENVIRONMENTS)
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
    e.set_defaults(func=_cmd_eval)

    p = sub.add_parser("plot", help="learning curves (mean and spread over seeds)")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("-o", "--output", default="curves.png")
    p.add_argument("--metric", default="env/return")
    p.add_argument("--smooth", type=int, default=1)
    p.set_defaults(func=_cmd_plot)

    s = sub.add_parser("table", help="mean and spread over seeds of return, coverage and collisions at a step count")
    s.add_argument("run_dirs", nargs="+")
    s.add_argument("--at", type=int, required=True, help="environment steps (must end an iteration)")
    s.add_argument("--window", type=int, default=1, help="iterations averaged, ending at --at")
    s.set_defaults(func=_cmd_table)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what --backend mpi relaunches under mpiexec
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
