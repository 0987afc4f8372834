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
import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ALGORITHMS = ("matrpo", "itrpo", "ctrpo", "mappo", "fdmarl")
ENVIRONMENTS = ("cooperative_navigation", "treasure_collection")
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


@dataclass(frozen=True)
class EnvConfig:
    """Which environment to train on and how it is batched."""

    name: str = "cooperative_navigation"  # one of ENVIRONMENTS
    n_agents: int = 3  # N; navigation: N agents and N landmarks; treasure: hunters + 2 banks
    n_envs: int = 10  # parallel environment copies per rollout (the original code uses 10)
    max_cycles: int = 100  # episode horizon T (paper: 100)
    reward_mode: str = "private"  # "private" (paper), "shared" (team sum to all), "mpe2" (local_ratio convention)

    def __post_init__(self) -> None:
        _check_choice("env.name", self.name, ENVIRONMENTS)
        if self.n_agents < 2:
            raise ValueError(f"env.n_agents must be >= 2, got {self.n_agents}")
        if self.name == "treasure_collection" and self.n_agents < 3:
            raise ValueError(f"env.n_agents must be >= 3 for treasure_collection, got {self.n_agents}")
        _check_positive("env.n_envs", self.n_envs)
        _check_positive("env.max_cycles", self.max_cycles)
        _check_choice("env.reward_mode", self.reward_mode, ("private", "shared", "mpe2"))


@dataclass(frozen=True)
class TRPOConfig:
    """Local trust-region step shared by MATRPO, I-TRPO and C-TRPO (original-code defaults)."""

    max_kl: float | None = None  # δ/N per agent; None -> paper Table III
    cg_iters: int = 10  # conjugate-gradient iterations
    cg_damping: float = 0.01  # Fisher damping (F + damping·I)
    fvp_subsample: int = 5  # Fisher on every k-th sample (original code: 5)
    ls_steps: int = 10  # backtracking tries
    ls_backtrack: float = 0.5  # step shrink factor per try
    fisher_form: str = "fast"  # Fisher-vector product: "fast" (Gauss-Newton J^T F J) or "exact" (double backward)
    warm_start_cg: bool = True  # start CG from the agent's previous direction (MATRPO inner loop)
    cg_iters_warm: int = 5  # CG iterations of a warm-started solve

    def __post_init__(self) -> None:
        if self.max_kl is not None:
            _check_positive("trpo.max_kl", self.max_kl)
        _check_positive("trpo.cg_iters", self.cg_iters)
        _check_positive("trpo.cg_iters_warm", self.cg_iters_warm)
        _check_positive("trpo.cg_damping", self.cg_damping, allow_zero=True)
        _check_positive("trpo.fvp_subsample", self.fvp_subsample)
        _check_positive("trpo.ls_steps", self.ls_steps)
        _check_choice("trpo.fisher_form", self.fisher_form, ("fast", "exact"))
        if not 0.0 < self.ls_backtrack < 1.0:
            raise ValueError(f"trpo.ls_backtrack must be in (0, 1), got {self.ls_backtrack}")


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
    checkpoint_every: int = 10  # outer iterations between checkpoints (and one at the end)
    log_every: int = 1
    torch_threads: int | None = 1  # intra-op threads; 1 is fastest here (small batches, endpoints run in parallel)

    def __post_init__(self) -> None:
        _check_choice("algo", self.algo, ALGORITHMS)
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
        _check_positive("vf_lr", self.vf_lr)
        _check_positive("vf_epochs", self.vf_epochs, allow_zero=True)
        _check_positive("vf_minibatch", self.vf_minibatch)
        _check_positive("checkpoint_every", self.checkpoint_every)
        _check_positive("log_every", self.log_every)
        if self.torch_threads is not None:
            _check_positive("torch_threads", self.torch_threads)

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


_SECTIONS = {"env": EnvConfig, "trpo": TRPOConfig, "admm": ADMMConfig}
_SECTION_NAMES = (*_SECTIONS, "mappo", "fdmarl")


def _section_class(name: str) -> type:
    return _SECTIONS[name] if name in _SECTIONS else _algorithm_sections()[name]


def _coerce(cls: type, name: str, value: Any) -> Any:
    """Coerce a loaded or command-line value to the declared field type."""
    ftype = {f.name: f.type for f in fields(cls)}[name]
    if isinstance(value, str) and ftype not in ("str",):
        text = value.strip()
        if "None" in ftype and text.lower() in ("none", "null"):
            return None
        if ftype.startswith("bool"):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{name} expects a boolean, got {value!r}")
        if ftype.startswith("tuple"):
            return tuple(int(v) for v in text.strip("()[] ").split(",") if v.strip())
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{name}: cannot parse {value!r} as {ftype}") from exc
    if ftype.startswith("int") and isinstance(value, float) and value.is_integer():
        return int(value)
    if ftype.startswith("tuple") and isinstance(value, list):
        return tuple(value)
    if ftype.startswith("float") and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Build a :class:`TrainConfig` from a nested dict; unknown keys raise ``ValueError``."""
    top_names = {f.name for f in fields(TrainConfig)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in top_names:
            raise ValueError(f"unknown config key {key!r}; allowed: {sorted(top_names)}")
        if key in _SECTION_NAMES:
            if not isinstance(value, dict):
                raise ValueError(f"config section {key!r} must be a table/mapping")
            cls = _section_class(key)
            allowed = {f.name for f in fields(cls)}
            unknown = set(value) - allowed
            if unknown:
                raise ValueError(f"unknown key(s) {sorted(unknown)} in [{key}]; allowed: {sorted(allowed)}")
            kwargs[key] = cls(**{k: _coerce(cls, k, v) for k, v in value.items()})
        else:
            kwargs[key] = _coerce(TrainConfig, key, value)
    return TrainConfig(**kwargs)


def load_config(path: str | Path) -> TrainConfig:
    """Load a TOML (``.toml``) or YAML (``.yaml``/``.yml``) or JSON config file."""
    path = Path(path)
    text = path.read_text()
    if path.suffix == ".toml":
        data = tomllib.loads(text)
    elif path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text) or {}
    elif path.suffix == ".json":
        data = json.loads(text)
    else:
        raise ValueError(f"config file must end in .toml, .yaml, .yml or .json, got {path.name!r}")
    return config_from_dict(data)


def apply_overrides(config: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply ``section.key=value`` (or ``key=value``) overrides, e.g. ``admm.penalty=5``."""
    data = config.to_dict()
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value or section.key=value")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) == 1:
            if parts[0] in _SECTION_NAMES:
                raise ValueError(f"override {item!r} names a whole section; use {parts[0]}.key=value")
            data[parts[0]] = value
        elif len(parts) == 2 and parts[0] in _SECTION_NAMES:
            data[parts[0]][parts[1]] = value
        else:
            raise ValueError(
                f"override key {key!r} must be key or section.key with section in {sorted(_SECTION_NAMES)}")
    return config_from_dict(data)
