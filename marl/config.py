"""Typed training configuration: frozen dataclasses, file loading (TOML/YAML), command-line overrides.

Defaults live only here (STYLE.md §2). Fields left at ``None`` take the paper's Table III value for the chosen
environment and team size; the resolved values are exposed as properties (``TrainConfig.max_kl`` …) and the resolved
configuration is what gets saved in the run directory.

Paper Table III (Li & He, MATRPO):

==========  ==  ======  ===============  ====
task        N   δ/N     ADMM iterations  β
==========  ==  ======  ===============  ====
navigation  3   0.003   100              1
navigation  6   0.003   150              1
treasure    8   0.001   200              5
treasure    12  0.001   500              5
==========  ==  ======  ===============  ====
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import numbers
import re
import tomllib
import types
import typing
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

if typing.TYPE_CHECKING:  # the [mappo]/[fdmarl] sections' classes live beside their algorithms (imported lazily)
    from .algos.fdmarl import FDMARLSettings
    from .algos.mappo import MAPPOSettings

ALGORITHMS = ("matrpo", "itrpo", "ctrpo", "mappo", "fdmarl")
SAMPLING_NOISE = ("independent", "shared")
ENVIRONMENTS = ("cooperative_navigation", "treasure_collection")  # the paper's tasks (marl.envs.ENV_NAMES)
# EnvConfig's own settings, passed to the paper's tasks by name (never through their env.kwargs)
ENV_OWN_KEYS = ("name", "n_agents", "n_envs", "max_cycles", "reward_mode", "seed")
GRAPHS = ("ring", "complete", "star", "erdos_renyi", "path")

# (env, n_agents) -> (max_kl = δ/N, admm_iters, penalty β); Table III.
_TABLE_III = {
    ("cooperative_navigation", 3): (0.003, 100, 1.0),
    ("cooperative_navigation", 6): (0.003, 150, 1.0),
    ("treasure_collection", 8): (0.001, 200, 5.0),
    ("treasure_collection", 12): (0.001, 500, 5.0),
}


def _table_iii(env: str, n_agents: int) -> tuple[float, int, float]:
    if (env, n_agents) in _TABLE_III:
        return _TABLE_III[(env, n_agents)]
    if env not in ENVIRONMENTS:  # another PettingZoo environment: the navigation rows (simple_spread's family)
        env = "cooperative_navigation"
    # Outside the table: the nearest row of the same task (by team size).
    rows = sorted((abs(n - n_agents), key) for key in _TABLE_III if key[0] == env for n in [key[1]])
    return _TABLE_III[rows[0][1]]


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _check_positive(name: str, value: float | int, *, allow_zero: bool = False) -> None:
    if not (value > 0 or (allow_zero and value == 0)):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")


# -- type checks, driven by the field annotations -----------------------------------------------------------------
# Every config dataclass calls ``_check_types(self)`` first in ``__post_init__``; its range checks then see values of
# the declared types. A new field or section needs no entry here: its annotation is the type check.


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    # The [mappo]/[fdmarl] annotations name classes defined beside their algorithms (imported lazily).
    return typing.get_type_hints(cls, localns={c.__name__: c for c in _algorithm_sections().values()})


def _key_prefix(cls: type) -> str:
    """``"env."`` for the class registered as section ``env`` in ``SECTIONS``; ``""`` for the top level."""
    return next((f"{name}." for name, section in sections().items() if section is cls), "")


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool) or type(value).__name__ == "bool_"  # numpy.bool_ without importing numpy


def _typed(key: str, tp: Any, value: Any) -> Any:
    """``value`` checked against the annotation ``tp`` (numbers normalised to ``int``/``float``); ``ValueError``
    naming ``key`` otherwise."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _typed(key, inner[0], value) if len(inner) == 1 else value
    if tp is bool:
        if _is_bool(value):
            return bool(value)
        raise ValueError(f"{key} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, numbers.Integral) and not _is_bool(value):
            return int(value)
        raise ValueError(f"{key} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, numbers.Real) and not _is_bool(value):
            if not math.isfinite(float(value)):
                raise ValueError(f"{key} must be a finite number, got {value!r}")
            return float(value)
        raise ValueError(f"{key} must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"{key} must be a string, got {value!r}")
    if typing.get_origin(tp) is tuple and args[-1:] == (Ellipsis,):
        if isinstance(value, (tuple, list)):
            return tuple(_typed(f"{key}[{k}]", args[0], v) for k, v in enumerate(value))
        raise ValueError(f"{key} must be a list, got {value!r}")
    if dataclasses.is_dataclass(tp) and not isinstance(value, tp):
        raise ValueError(f"{key} must be the [{key}] table ({tp.__name__}), got {value!r}")
    return value


def _check_types(config: Any, prefix: str | None = None) -> None:
    """Type-check every field of the frozen config dataclass ``config`` against its annotation, in place; the
    sections it holds are checked too (idempotent), so a section class is covered even where its own
    ``__post_init__`` does not call this. Messages name ``prefix + field`` (default: the section's key prefix)."""
    prefix = _key_prefix(type(config)) if prefix is None else prefix
    hints = _hints(type(config))
    for f in fields(config):
        value = getattr(config, f.name)
        checked = _typed(prefix + f.name, hints[f.name], value)
        if checked is not value:
            object.__setattr__(config, f.name, checked)
        if dataclasses.is_dataclass(checked) and not isinstance(checked, type):
            _check_types(checked)


check_types = _check_types  # public name for other frozen settings built from files (e.g. a sweep's [report])


_MODULE_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")


def _check_env_kwargs(kwargs: Any, own: tuple[str, ...]) -> dict[str, Any]:
    """``env.kwargs`` as a plain dict of identifier keys and TOML/JSON values, none of them in ``own`` (settings of
    their own in EnvConfig), else ``ValueError`` naming the key."""
    if not isinstance(kwargs, dict):
        raise ValueError(f"env.kwargs must be a table of keyword arguments, got {kwargs!r}")

    def check(key: str, value: Any) -> Any:
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError(f"{key} must be a finite number, got {value!r}")
            return value
        if isinstance(value, (list, tuple)):
            return [check(f"{key}[{k}]", v) for k, v in enumerate(value)]
        if isinstance(value, dict):
            return {str(k): check(f"{key}.{k}", v) for k, v in value.items()}
        raise ValueError(f"{key} must be a number, string, boolean, list or table, got {value!r}")

    out = {}
    for key, value in kwargs.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ValueError(f"env.kwargs keys must be Python identifiers (keyword arguments), got {key!r}")
        if key in own:
            raise ValueError(f"env.kwargs.{key} is a setting of its own for the paper's tasks: set env.{key} instead")
        out[key] = check(f"env.kwargs.{key}", value)
    return out


@dataclass(frozen=True)
class EnvConfig:
    """Which environment to train on and how it is batched."""

    # One of ENVIRONMENTS (the paper's tasks), or the module path of any PettingZoo ParallelEnv: a module with a
    # parallel_env(**kwargs) factory, e.g. "mpe2.simple_spread_v3" (marl.envs.registry.parallel_env_factory)
    name: str = "cooperative_navigation"
    n_agents: int = 3  # N; navigation: N agents and N landmarks; treasure: hunters + 2 banks; other envs: must match
    n_envs: int = 10  # parallel environment copies per rollout (the original code uses 10)
    max_cycles: int = 100  # episode horizon T (paper: 100); the paper's tasks only (others: their own kwargs)
    reward_mode: str = "private"  # "private" (paper), "shared" (team sum to all), "mpe2" (local_ratio convention);
    # the paper's tasks only
    # Further keyword arguments of the environment: of parallel_env for a module path (e.g. {N = 3, max_cycles = 25}
    # for mpe2.simple_spread_v3), of marl.envs.make_vector_env for the paper's tasks (e.g. variant, local_ratio).
    # TOML: an [env.kwargs] table; command line: --set env.kwargs.N=3 (the value read as TOML, else as a string).
    kwargs: dict[str, Any] = field(default_factory=dict)
    # Action vectors in [0, 1]^5 (mpe2's continuous layout; samples outside are clipped by the environment) and
    # Gaussian policy heads, instead of 5 discrete moves (MATRPO, I-TRPO and C-TRPO; the paper's tasks only)
    continuous_actions: bool = False

    def __post_init__(self) -> None:
        _check_types(self)
        if self.name not in ENVIRONMENTS and not _MODULE_PATH.fullmatch(self.name):
            raise ValueError(f"env.name must be one of {ENVIRONMENTS} or the module path of a PettingZoo environment "
                             f"with a parallel_env factory (e.g. 'mpe2.simple_spread_v3'), got {self.name!r}")
        own = ENV_OWN_KEYS if self.name in ENVIRONMENTS else ()
        object.__setattr__(self, "kwargs", _check_env_kwargs(self.kwargs, own))
        if self.n_agents < 2:
            raise ValueError(f"env.n_agents must be >= 2, got {self.n_agents}")
        if self.name == "treasure_collection" and self.n_agents < 3:
            raise ValueError(f"env.n_agents must be >= 3 for treasure_collection, got {self.n_agents}")
        _check_positive("env.n_envs", self.n_envs)
        _check_positive("env.max_cycles", self.max_cycles)
        _check_choice("env.reward_mode", self.reward_mode, ("private", "shared", "mpe2"))


@dataclass(frozen=True)
class TRPOConfig:
    """Local trust-region step shared by MATRPO, I-TRPO and C-TRPO (original-code defaults).

    Keys are spelled as ``trpo_core.TRPOSettings``'s fields (``marl.algos.from_config.trpo_settings`` builds it);
    the old spellings are still read (:data:`RENAMED_KEYS`).
    """

    max_kl: float | None = None  # δ/N per agent; None -> paper Table III
    cg_max_iter: int = 10  # conjugate-gradient iterations
    damping: float = 0.01  # Fisher damping (F + damping·I)
    fvp_subsample_every: int = 5  # Fisher on every k-th sample (original code: 5)
    max_backtracks: int = 10  # backtracking tries
    backtrack_coeff: float = 0.5  # step shrink factor per try
    fisher_form: str = "fast"  # Fisher-vector product: "fast" (Gauss-Newton J^T F J) or "exact" (double backward)
    warm_start_cg: bool = True  # start CG from the agent's previous direction (MATRPO inner loop)
    cg_max_iter_warm: int = 5  # CG iterations of a warm-started solve (MATRPO)

    def __post_init__(self) -> None:
        _check_types(self)
        if self.max_kl is not None:
            _check_positive("trpo.max_kl", self.max_kl)
        _check_positive("trpo.cg_max_iter", self.cg_max_iter)
        _check_positive("trpo.cg_max_iter_warm", self.cg_max_iter_warm)
        _check_positive("trpo.damping", self.damping, allow_zero=True)
        _check_positive("trpo.fvp_subsample_every", self.fvp_subsample_every)
        _check_positive("trpo.max_backtracks", self.max_backtracks)
        _check_choice("trpo.fisher_form", self.fisher_form, ("fast", "exact"))
        if not 0.0 < self.backtrack_coeff < 1.0:
            raise ValueError(f"trpo.backtrack_coeff must be in (0, 1), got {self.backtrack_coeff}")


@dataclass(frozen=True)
class ADMMConfig:
    """MATRPO's consensus loop (matrpo-reference-code.md §11 switches)."""

    iterations: int | None = None  # edge activations per outer iteration; None -> Table III
    penalty: float | None = None  # β; None -> Table III
    graph: str = "ring"  # communication topology (paper: ring)
    graph_p: float = 0.5  # edge probability for erdos_renyi
    # "cyclic" (original code; default: learned better in RESULTS.md's ablation) or "random" (paper, Algorithm 1)
    edge_order: str = "cyclic"
    exchange: str = "true"  # exchanged ratio: "true" log-ratio (original) or "linearized" J·Δθ (paper eq. 22)
    theta_update: str = "linesearch"  # "linesearch" (CG + backtracking on the nonlinear Lagrangian) or "closed_form"
    step_length: str = "boundary"  # "boundary" (eq. 22, original) or "penalized" (eq. 47 with lambda* >= 0)
    dual_init: float = 0.0  # initial duals y (original code: 1.0; equivalent on the ring)
    drop_prob: float = 0.0  # probability that a message on an edge is lost
    adv_norm: str = "pooled"  # "pooled" (original; computed here by average consensus), "per_agent", "none"
    parallel_endpoints: bool = True  # run the two endpoint updates of an edge in two threads (same result)

    def __post_init__(self) -> None:
        _check_types(self)
        if self.iterations is not None:
            _check_positive("admm.iterations", self.iterations)
        if self.penalty is not None:
            _check_positive("admm.penalty", self.penalty)
        _check_choice("admm.graph", self.graph, GRAPHS)
        if not 0.0 < self.graph_p <= 1.0:
            raise ValueError(f"admm.graph_p must be in (0, 1], got {self.graph_p}")
        _check_choice("admm.edge_order", self.edge_order, ("random", "cyclic"))
        _check_choice("admm.exchange", self.exchange, ("true", "linearized"))
        _check_choice("admm.theta_update", self.theta_update, ("linesearch", "closed_form"))
        _check_choice("admm.step_length", self.step_length, ("boundary", "penalized"))
        if not 0.0 <= self.drop_prob < 1.0:
            raise ValueError(f"admm.drop_prob must be in [0, 1), got {self.drop_prob}")
        _check_choice("admm.adv_norm", self.adv_norm, ("pooled", "per_agent", "none"))


def _algorithm_sections() -> dict[str, type]:
    """The ``[mappo]`` and ``[fdmarl]`` sections: the algorithms' own settings classes, defined beside their math.

    Imported on use because ``marl.algos`` imports this module.
    """
    from .algos.fdmarl import FDMARLSettings
    from .algos.mappo import MAPPOSettings

    return {"mappo": MAPPOSettings, "fdmarl": FDMARLSettings}


def _default_section(name: str):
    return field(default_factory=lambda: _algorithm_sections()[name]())


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; saved as ``config.json`` in the run directory."""

    algo: str = "matrpo"  # one of ALGORITHMS
    env: EnvConfig = field(default_factory=EnvConfig)
    trpo: TRPOConfig = field(default_factory=TRPOConfig)
    admm: ADMMConfig = field(default_factory=ADMMConfig)
    mappo: MAPPOSettings = _default_section("mappo")  # marl.algos.mappo.MAPPOSettings
    fdmarl: FDMARLSettings = _default_section("fdmarl")  # marl.algos.fdmarl.FDMARLSettings
    total_steps: int = 2_000_000  # environment steps (one step = all agents act once)
    steps_per_iter: int = 10_000  # environment steps per outer iteration (paper: 10k)
    seed: int = 0
    gamma: float = 0.995  # discount γ (paper)
    gae_lambda: float = 0.95  # GAE λ (paper)
    # "ignore" (original navigation code, finite=False: the trace runs through resets; default, learned better in
    # RESULTS.md's ablation) or "correct" (cut at termination, bootstrap V(final obs) at truncation)
    gae_boundaries: str = "ignore"
    hidden_sizes: tuple[int, ...] = (128, 128)  # two hidden layers of 128 SELU units (paper)
    activation: str = "selu"
    vf_lr: float = 3e-4  # value Adam step size
    vf_epochs: int = 3
    vf_minibatch: int = 64
    # Run the agents' value regressions (independent, one per agent) as one stacked computation
    # (trpo_core.fit_stacked: same result per agent, and no agent's fit reads another's data; both tested).
    stack_value_fits: bool = True
    # Fit V in a worker thread while the policy step runs (the policy step never reads V; same result, tested).
    concurrent_value_fit: bool = True
    # Action sampling noise. "independent": each agent draws from its own generator (the paper's model).
    # "shared": every agent draws the same uniform noise per step and head position from a generator seeded by a
    # common seed agreed before training, and applies it to its own logits by Gumbel-max (the authors' code,
    # matrpo-reference-code.md §10.6). No communication at run time, so MATRPO stays fully decentralized.
    sampling_noise: str = "independent"
    checkpoint_every: int = 10  # outer iterations between checkpoints (and one at the end)
    torch_threads: int | None = 1  # intra-op threads; 1 is fastest here (small batches, endpoints run in parallel)
    # Evaluation during training (marl.evaluation.evaluate_policy): after every eval_every-th outer iteration (0 = off),
    # eval_episodes episodes with the greedy (mode) policy on environments of their own, seeded apart from the
    # training ones and the same at every evaluation; logged as eval/* in the same row, in-process and with
    # --backend mpi (each agent process takes its own policy's mode). Off by default: the paper reports the training
    # episodes' return (env/return), and a default run's configuration stays that of the runs already recorded. An
    # evaluation of 10 episodes costs about 2% of an I-TRPO iteration at the paper's settings. BenchMARL's default
    # (10 episodes every 120k frames) is about eval_every=10 with the paper's 10k steps per iteration.
    eval_every: int = 0  # >= 0
    eval_episodes: int = 10  # >= 1
    # --backend mpi: seconds an agent process may send no heartbeat (one a second from a thread of its own, whatever
    # its update is doing) before the world ends the job naming it as hung (stopped, deadlocked); > 0
    mpi_agent_timeout: float = 60.0

    def __post_init__(self) -> None:
        _check_types(self)
        _check_choice("algo", self.algo, ALGORITHMS)
        _check_positive("seed", self.seed, allow_zero=True)
        _check_positive("total_steps", self.total_steps)
        _check_positive("steps_per_iter", self.steps_per_iter)
        if self.steps_per_iter % self.env.n_envs:
            raise ValueError(
                f"steps_per_iter ({self.steps_per_iter}) must be a multiple of env.n_envs ({self.env.n_envs})"
            )
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")
        if not 0.0 <= self.gae_lambda <= 1.0:
            raise ValueError(f"gae_lambda must be in [0, 1], got {self.gae_lambda}")
        _check_choice("gae_boundaries", self.gae_boundaries, ("correct", "ignore"))
        if not self.hidden_sizes or any(h <= 0 for h in self.hidden_sizes):
            raise ValueError(f"hidden_sizes must be non-empty positive ints, got {self.hidden_sizes}")
        _check_choice("activation", self.activation, ("selu", "tanh", "relu"))
        _check_choice("sampling_noise", self.sampling_noise, SAMPLING_NOISE)
        _check_positive("vf_lr", self.vf_lr)
        _check_positive("vf_epochs", self.vf_epochs, allow_zero=True)
        _check_positive("vf_minibatch", self.vf_minibatch)
        _check_positive("checkpoint_every", self.checkpoint_every)
        if self.torch_threads is not None:
            _check_positive("torch_threads", self.torch_threads)
        _check_positive("eval_every", self.eval_every, allow_zero=True)
        _check_positive("eval_episodes", self.eval_episodes)
        _check_positive("mpi_agent_timeout", self.mpi_agent_timeout)

    # Derived values (Table III unless set explicitly).
    @property
    def max_kl(self) -> float:
        return self.trpo.max_kl if self.trpo.max_kl is not None else _table_iii(self.env.name, self.env.n_agents)[0]

    @property
    def admm_iterations(self) -> int:
        it = self.admm.iterations
        return it if it is not None else _table_iii(self.env.name, self.env.n_agents)[1]

    @property
    def admm_penalty(self) -> float:
        pen = self.admm.penalty
        return pen if pen is not None else _table_iii(self.env.name, self.env.n_agents)[2]

    @property
    def steps_per_env(self) -> int:
        return self.steps_per_iter // self.env.n_envs

    @property
    def n_iterations(self) -> int:
        return -(-self.total_steps // self.steps_per_iter)

    def resolved(self) -> "TrainConfig":
        """Return a copy with every Table III default filled in (what a run actually used)."""
        return dataclasses.replace(
            self,
            trpo=dataclasses.replace(self.trpo, max_kl=self.max_kl),
            admm=dataclasses.replace(self.admm, iterations=self.admm_iterations, penalty=self.admm_penalty),
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SECTIONS = {"env": EnvConfig, "trpo": TRPOConfig, "admm": ADMMConfig}


def sections() -> dict[str, type]:
    """Every config section by key: ``SECTIONS`` and the algorithms' own settings (``[mappo]``, ``[fdmarl]``)."""
    return {**SECTIONS, **_algorithm_sections()}


def _parse_text(key: str, tp: Any, text: str) -> Any:
    """A command-line string as the annotation ``tp`` expects (the type check then validates the result)."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        if type(None) in args and text.lower() in ("none", "null"):
            return None
        inner = [a for a in args if a is not type(None)]
        return _parse_text(key, inner[0], text) if len(inner) == 1 else text
    if tp is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{key} must be true or false, got {text!r}")
    if tp in (int, float):
        try:
            number = float(text)  # also "1e6", "inf", "nan": the type check names what is wrong with them
        except ValueError:
            kind = "an integer" if tp is int else "a number"
            raise ValueError(f"{key} must be {kind}, got {text!r}") from None
        return _integral(number) if tp is int else number
    if typing.get_origin(tp) is tuple:
        items = [v.strip() for v in text.strip("()[] ").split(",") if v.strip()]
        return tuple(_parse_text(f"{key}[{k}]", args[0], v) for k, v in enumerate(items))
    return text


def _integral(value: Any) -> Any:
    """A whole float (``1e6``, TOML ``3.0``) as an int; anything else unchanged."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _coerce(cls: type, name: str, value: Any) -> Any:
    """Coerce a loaded or command-line value towards the declared field type (``cls(...)`` then checks it)."""
    key = _key_prefix(cls) + name
    tp = _hints(cls)[name]
    plain = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
    if isinstance(value, str) and str not in plain:
        return _parse_text(key, tp, value.strip())
    if int in plain:
        return _integral(value)
    if isinstance(value, list):
        return tuple(_integral(v) for v in value)
    return value


# -- old spellings --------------------------------------------------------------------------------------------------
# Renamed keys, old -> new: one spelling per setting across the packages (STYLE.md §7; the [trpo] keys are
# trpo_core.TRPOSettings's field names). Files, --set overrides and the config.json of older run directories may
# still use the old spelling: it is read as the new key, with a FutureWarning naming the new key.
RENAMED_KEYS = {
    "trpo.cg_iters": "trpo.cg_max_iter",
    "trpo.cg_iters_warm": "trpo.cg_max_iter_warm",
    "trpo.cg_damping": "trpo.damping",
    "trpo.fvp_subsample": "trpo.fvp_subsample_every",
    "trpo.ls_steps": "trpo.max_backtracks",
    "trpo.ls_backtrack": "trpo.backtrack_coeff",
}
# Removed keys -> why: read and ignored, with a FutureWarning (older run directories' config.json hold them).
REMOVED_KEYS = {"log_every": "metrics are logged every iteration (the key was never read)"}


def current_key(key: str) -> str | None:
    """The current spelling of the config key ``key`` (``name`` or ``section.name``); None for a removed key.

    Old spellings (:data:`RENAMED_KEYS`, :data:`REMOVED_KEYS`) give a ``FutureWarning`` naming the new key.
    """
    if key in RENAMED_KEYS:
        warnings.warn(f"config key {key!r} is deprecated; use {RENAMED_KEYS[key]!r}", FutureWarning, stacklevel=3)
        return RENAMED_KEYS[key]
    if key in REMOVED_KEYS:
        warnings.warn(f"config key {key!r} is ignored: {REMOVED_KEYS[key]}; remove it", FutureWarning, stacklevel=3)
        return None
    return key


def _current_keys(data: dict[str, Any], given: dict[str, str]) -> dict[str, Any]:
    """``data`` with old spellings replaced by the current keys (removed keys dropped); ``ValueError`` when a key is
    given under both spellings. ``given`` collects current key -> the spelling used."""
    out: dict[str, Any] = {}
    seen: dict[str, str] = {}

    def put(target: dict, name: str, value: Any, full: str, spelled: str) -> None:
        if full in seen:
            raise ValueError(f"config key {full!r} is given twice (as {seen[full]!r} and {spelled!r})")
        seen[full] = spelled
        if spelled != full:
            given[full] = spelled
        target[name] = value

    for key, value in data.items():
        if key in sections() and isinstance(value, dict):
            section = out.setdefault(key, {})
            for name, v in value.items():
                new = current_key(f"{key}.{name}")
                if new is not None:
                    put(section, new.split(".", 1)[1], v, new, f"{key}.{name}")
            continue
        new = current_key(key) if isinstance(key, str) else key
        if new is not None:
            put(out, new, value, new, key)
    return out


def config_from_dict(data: dict[str, Any], *, spelled: dict[str, str] | None = None) -> TrainConfig:
    """Build a :class:`TrainConfig` from a nested dict; unknown keys and ill-typed values raise ``ValueError``.

    Old key spellings are read as their current keys, with a ``FutureWarning`` (:func:`current_key`); an error about
    such a value names the key as it was spelled (``spelled``: current key -> old spelling, from the caller).
    """
    if not isinstance(data, dict):
        raise ValueError(f"a configuration must be a mapping of keys to values, got {type(data).__name__}")
    given = dict(spelled or {})
    data = _current_keys(data, given)
    try:
        return _config_from_dict(data)
    except ValueError as exc:
        message = str(exc)
        for new, old in given.items():
            if old != new:
                message = re.sub(rf"(?<![\w.]){re.escape(new)}(?![\w])", old, message)
        if message == str(exc):
            raise
        raise ValueError(message) from None


def _config_from_dict(data: dict[str, Any]) -> TrainConfig:
    top_names = {f.name for f in fields(TrainConfig)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in top_names:
            raise ValueError(f"unknown config key {key!r}; allowed: {sorted(top_names)}")
        if key in sections():
            if not isinstance(value, dict):
                raise ValueError(f"config section {key!r} must be a table/mapping of keys, got {value!r}")
            cls = sections()[key]
            allowed = {f.name for f in fields(cls)}
            unknown = set(value) - allowed
            if unknown:
                raise ValueError(f"unknown key(s) {sorted(unknown, key=str)} in [{key}]; allowed: {sorted(allowed)}")
            kwargs[key] = cls(**{k: _coerce(cls, k, v) for k, v in value.items()})
        else:
            kwargs[key] = _coerce(TrainConfig, key, value)
    return TrainConfig(**kwargs)


def load_config(path: str | Path) -> TrainConfig:
    """Load a TOML (``.toml``) or YAML (``.yaml``/``.yml``) or JSON config file.

    Raises
    ------
    ValueError
        Naming the file, for a missing or unreadable file, a syntax error, a root that is not a mapping, and (naming
        the key) for unknown keys and ill-typed or out-of-range values.
    """
    path = Path(path)
    if path.suffix not in (".toml", ".yaml", ".yml", ".json"):
        raise ValueError(f"config file must end in .toml, .yaml, .yml or .json, got {path.name!r}")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"config file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"config file {str(path)!r} is a directory") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read config file {str(path)!r}: {exc}") from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ValueError(" ".join(str(exc).split())) from None
            data = {} if data is None else data  # an empty YAML file
    except ValueError as exc:  # tomllib.TOMLDecodeError and json.JSONDecodeError are ValueErrors
        raise ValueError(f"cannot parse config file {str(path)!r}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(path)!r} must hold a mapping of keys to values, got {type(data).__name__}")
    return config_from_dict(data)


def apply_overrides(config: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply ``section.key=value`` (or ``key=value``) overrides, e.g. ``admm.penalty=5``."""
    data = config.to_dict()
    spelled: dict[str, str] = {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value or section.key=value")
        key, value = item.split("=", 1)
        old, key = key.strip(), current_key(key.strip())
        if key is None:
            continue
        spelled[key] = old
        parts = key.split(".")
        if len(parts) == 3 and parts[:2] == ["env", "kwargs"]:
            data["env"]["kwargs"][parts[2]] = _kwarg_value(value.strip())
        elif len(parts) == 1:
            if parts[0] in sections():
                raise ValueError(f"override {item!r} names a whole section; use {parts[0]}.key=value")
            data[parts[0]] = value
        elif len(parts) == 2 and parts[0] in sections():
            data[parts[0]][parts[1]] = value
        else:
            raise ValueError(f"override key {key!r} must be key or section.key with section in {sorted(sections())}, "
                             "or env.kwargs.NAME")
    return config_from_dict(data, spelled=spelled)


def _kwarg_value(text: str) -> Any:
    """A command-line ``env.kwargs.NAME=VALUE`` value: read as a TOML value (``3``, ``0.5``, ``true``, ``[1, 2]``,
    ``"x"``), else taken as the string itself (``mpe2``)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
