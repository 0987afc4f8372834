r"""MATRPO: multi-agent trust region policy optimization by asynchronous consensus ADMM (Li & He).

Problem (paper eq. 8, sample form eq. 21). Every agent i learns a local model of the *joint* policy,
pi^i(a | o^i) = prod_n pi^i(a^n | o^i), from its own observation o^i and its own reward r^i. The agents must agree,
on every sampled (o_m, a_m), on the per-head log-ratios, while each stays inside its own trust region:

    max_{theta^i}  sum_i (1/M) sum_m exp(sum_n l^i_{n,m}) A^i_m
    s.t.           l^i_{n,m} = l^j_{n,m}   for every edge (i, j) of the communication graph
                   KLbar(theta_old^i || theta^i) <= delta / N,

with l^i_{n,m}(theta) = log pi^i(a^n_m | o^i_m; theta) - log pi^i(a^n_m | o^i_m; theta_old) (paper §V-B).

Symbols
-------
=============  ===========================  =====================  =========================================
paper          code                         shape                  meaning
=============  ===========================  =====================  =========================================
M              ``m``                                               samples in the batch (T * B)
N              ``n_agents``                                        agents = heads per policy
A^q            ``batch.advantages``         [M]                    agent q's (normalised) GAE advantage
l^q            ``batch.logratio(theta)``    [N, M]                 per-head log-ratio at theta^q
x^q            ``x``                        [N*M]                  what q sends on the active edge (M6)
w^q            ``w``                        [N, M]                 per-sample weights of (M1)
J^{qn}         ``batch.jacobian`` (J^T)     [M, P]                 Jacobian of l^q_n at theta_old
V^q            ``v``                        [P]                    right-hand side of (M2)
H^q            ``batch.fisher``             [P, P]                 Fisher = Hessian of the mean KL (undamped)
s^q            ``s``                        [P]                    (H^q + damping I)^{-1} V^q (M3)
               ``step_size``                                       (M4)'s factor sqrt(2 (delta/N) / s^T H s)
z_e            ``engine.z[e]``              [N*M]                  edge estimate (edge form, see below)
y_e^q, C_e^q   ``engine.duals[e, s]``       [N*M]                  lambda_{e,q} = C_e^q y_e^q
beta           ``penalty``                                         ADMM penalty (held by the edge engine)
delta/N        ``max_kl``                                          per-agent trust region
=============  ===========================  =====================  =========================================

Agent q's batch, fixed at theta_old once per outer iteration, is a frozen :class:`LocalBatch`; the edge engine
hands it, at each endpoint update, its sums over E(q), |E(q)| and beta (``consensus_admm.EndpointTerms``). (M4)'s
factor is ``trpo_core.max_step_length`` (T2); the line search is ``trpo_core.backtracking_line_search`` under the
"matrpo" acceptance rule with its ``kl_bound`` (1.5 delta/N).

The paper's signed form (9)-(12) with estimates z_e^q, z_e^i + z_e^j = 0, is the ordinary edge form of consensus
ADMM (``consensus_admm.EdgeConsensus``: constraints l^q = z_e, duals lambda_{e,q}) under the change of variables
z_e^q = C_e^q z_e and lambda_{e,q} = C_e^q y_e^q. In those variables eq. (22) reads, for the active edge e = (i, j)
and each endpoint q in {i, j}:

(M1)  w^q = A^q (tiled over the N heads) - sum_{e' in E(q)} lambda_{e',q} + beta sum_{e' in E(q)} z_{e'}
(M2)  V^q = (1/M) sum_n J^{qn T} w^q_n                               (a vector-Jacobian product at theta_old)
(M3)  s^q = (H^q + damping I)^{-1} V^q                               (conjugate gradient, 10 iterations)
(M4)  theta^q = theta_old^q + sqrt(2 (delta/N) / s^T H s) s          (closed form (22): step to the KL boundary)
      ["penalized": the step is capped at s / (|E(q)| beta), the interior minimiser of eq. (47)]
(M5)  [linesearch] backtrack theta_old + 0.5^k (theta^q - theta_old) until KL <= 1.5 delta/N and the nonlinear
      augmented Lagrangian
          L^q(theta) = -(1/M) sum_m exp(sum_n l_{n,m}) A_m
                       + (1/M) sum_{e in E(q)} sum_{n,m} [lambda_{e,q} (l - z_e) + (beta/2) (l - z_e)^2]
      does not increase; otherwise theta^q = theta_old^q                   (original code, §4.4)
(M6)  x^q = l^q(theta^q) ("true") or J^q (theta^q - theta_old^q) ("linearized", eq. 22)
(M7)  z_e = (x^i + x^j)/2 + (lambda_{e,i} + lambda_{e,j}) / (2 beta);  lambda_{e,q} += beta (x^q - z_e)
      (equivalent to nu_e, z_e^q, y_e^q of eq. 22; done by ``EdgeConsensus.exchange``)

Every ADMM iteration restarts the endpoint from theta_old (x^q = theta^q - theta_old^q in the paper's proof); each
agent keeps the theta of its last endpoint update for the next rollout (original code).

What crosses an edge: each endpoint sends its x^q (N*M floats) and its dual lambda_{e,q} (N*M floats). Nothing else
leaves an agent: its observations, rewards, advantages, values and parameters stay private (enforced in tests with
:mod:`marl.algos.privacy`). The joint action is the one global quantity the paper allows (§IV-D).

Departures from the paper and from the original code (matrpo-reference-code.md §8, §11), each a switch:

- ``admm.edge_order``: "cyclic" (original code; default) or "random" (paper, Algorithm 1).
- ``admm.theta_update``: "linesearch" (original code: CG + backtracking on the nonlinear Lagrangian; default) or
  "closed_form" (eq. 22 with the CG solve of H^{-1} V).
- ``admm.step_length``: "boundary" (paper eq. 22 and original code: always step to the KL boundary, i.e. assume
  the KL multiplier lambda* > 0) or "penalized" (eq. 47 without that assumption: x* = H^{-1} V / (lambda* +
  |E(q)| beta), so the step stops at H^{-1} V / (|E(q)| beta) when that point is inside the trust region).
- ``admm.exchange``: "true" log-ratio (original; default) or "linearized" J (theta - theta_old) (paper).
- ``admm.dual_init``: initial y (original 1.0, paper unspecified; default 0.0). With lambda = C y and C = +1 at the
  lower-indexed endpoint, y = c gives lambda_{e,i} = c, lambda_{e,j} = -c; equivalent to 0 on the ring (§4.5).
- ``admm.adv_norm``: "pooled" standardises with the mean and std over all agents and samples, as the original code
  does, but computes those two numbers by average consensus over the graph (``consensus_admm.solve`` with
  ``Averaging`` objectives), so no agent reads another's advantages; "per_agent"; "none".
- ``gae_boundaries``: "ignore" (original navigation runs, finite=False: the trace runs through resets; default) or
  "correct" (cut at termination, bootstrap V(final obs) at truncation).
  The two defaults are the original code's choices because they learned better than the paper's (random order,
  correct boundaries) in RESULTS.md's ablation (Navigation N=3, 2 seeds, 500k steps: about 8 points of team
  return); the paper's behaviour is ``--set admm.edge_order=random --set gae_boundaries=correct``.
- ``admm.parallel_endpoints``: the two endpoints of the active edge update in two threads (each agent's update only
  reads its own state, so this changes nothing but the wall-clock time).
- ``stack_value_fits``: the agents' value regressions (independent, each on its own data) run as one stacked
  computation (``trpo_core.fit_stacked``); each agent's result equals its own fit up to rounding, and tests prove
  that no agent's result depends on another agent's data. ``concurrent_value_fit``: the policy step never reads
  V, so the fit runs in a worker thread during the consensus (bit-identical results, tested).
- Warm-started CG (``trpo.warm_start_cg``, ``trpo.cg_max_iter_warm``): within an outer iteration H^q is fixed and
  V^q changes gradually, so each agent's solves after its first start from its previous direction (rescaled by a
  line minimisation of the quadratic model) and run ``cg_max_iter_warm`` (5) instead of ``cg_max_iter`` (10)
  iterations.
  The product A s of each solve is kept (A s = g - r from CG's residual), so neither the warm start's first residual
  nor the step length s^T A s costs a Fisher product.
  Measured on a Navigation N=3 batch (M = 10,000, damping 0.01): cold 10-iteration CG leaves a relative residual
  ||r||/||g|| of 0.43-0.63 (CG is far from converged on this ill-conditioned Fisher), warm 3-5 iterations 0.22-0.47.
- The line search (M5) evaluates each candidate's KL first, over the batch in chunks, and stops as soon as the
  partial sum of the non-negative per-sample KL terms proves the candidate outside 1.5 delta/N; the Lagrangian is
  evaluated only for candidates inside. Decisions are those of the full evaluation. (On Navigation N=3 the full
  step to the quadratic model's boundary has a true KL of 4-8 delta/N and is always rejected, as in the original
  code; the chunked test rejects it after about 40% of the batch.)
- Samples are ordered env-major (m = env * T + t, as the original code's ``sf01``;
  ``marl.algos.batch.samples``), so the Fisher's every-5th-sample subsample spans every episode of the batch.
  A time-major order (all steps of 2 of 10 envs) learned markedly slower (RESULTS.md, "Sample order").
- Continuous actions (``env.continuous_actions``; the paper's tasks are discrete): each head n is a diagonal
  Gaussian N(mu_n(o), diag sigma_n^2) with a state-independent log-std (``marl.networks.MultiHeadGaussianPolicy``,
  ``trpo_core.MultiDiagGaussian``). l^q, the scores of (M2) ((a - mu) / sigma^2 on the mean, ((a - mu) / sigma)^2 - 1
  on the log-std) and the Fisher of (M3) are the Gaussian's; (M1) and (M4)-(M7) are unchanged.
- The CG right-hand side (M2) is a vector-Jacobian product on activations cached once per outer iteration at
  theta_old (``trpo_core.FisherVectorProduct.vjp``: the score w_n (onehot(a^n) - pi_n) on the logits pulled back
  by hand through the MLP), and the Fisher product (every 5th sample, as the original code) is built once per outer
  iteration too.
"""

from __future__ import annotations

import dataclasses
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import networkx as nx
import numpy as np
import torch
from torch.func import functional_call

from consensus_admm import ADMMSettings, Averaging, EdgeConsensus, EndpointTerms, solve
from trpo_core import (
    FisherVectorProduct,
    MultiCategorical,
    MultiDiagGaussian,
    TRPOSettings,
    backtracking_line_search,
    fisher_vector_product,
    flat_params,
    max_step_length,
    natural_gradient_direction,
    set_flat_params,
    unflatten,
)

from ..rollout import Rollout
from .batch import samples, standardize
from .evaluator import PolicyEvaluator
from .learner import Learner, LearnerSettings, TeamCheckpoint, act_independently
from .privacy import acting_as
from .seeding import seed_sequence
from .value_fits import ValueFits, value_fit_executor


def communication_graph(name: str, n_agents: int, *, p: float = 0.5, seed: int = 0) -> nx.Graph:
    """Return the communication graph over agents ``0..n_agents-1`` (ring by default, as in the paper)."""
    if name == "ring":
        return nx.cycle_graph(n_agents) if n_agents > 2 else nx.path_graph(n_agents)
    if name == "complete":
        return nx.complete_graph(n_agents)
    if name == "star":
        return nx.star_graph(n_agents - 1)
    if name == "path":
        return nx.path_graph(n_agents)
    if name == "erdos_renyi":
        rng = np.random.default_rng(seed)
        for _ in range(1000):
            g = nx.erdos_renyi_graph(n_agents, p, seed=int(rng.integers(2**31)))
            if nx.is_connected(g):
                return g
        raise ValueError(f"could not draw a connected Erdos-Renyi graph with n={n_agents}, p={p}; raise admm.graph_p")
    raise ValueError(f"graph must be one of ring, complete, star, path, erdos_renyi; got {name!r}")


GRAPHS = ("ring", "complete", "star", "path", "erdos_renyi")
_CHOICES = {
    "graph": GRAPHS,
    "edge_order": ("cyclic", "random"),
    "exchange": ("true", "linearized"),
    "theta_update": ("linesearch", "closed_form"),
    "step_length": ("boundary", "penalized"),
    "adv_norm": ("pooled", "per_agent", "none"),
}


@dataclass(frozen=True)
class MATRPOSettings:
    """MATRPO's consensus loop and the switches of its local update (see the module docstring for each choice).

    The trust-region step itself is a ``trpo_core.TRPOSettings`` (``max_kl`` = delta/N). No defaults here: they live
    in :class:`marl.config.TrainConfig` (``[admm]``, paper Table III by task) and
    ``marl.algos.from_config.matrpo_settings`` builds this once from it.
    """

    iterations: int  # edge activations per outer iteration; >= 1 (Table III)
    penalty: float  # beta, the ADMM penalty; > 0 (Table III)
    graph: str  # communication topology, one of GRAPHS (paper: ring)
    graph_p: float  # edge probability of "erdos_renyi"; in (0, 1]
    edge_order: str  # "cyclic" (original code) or "random" (paper, Algorithm 1)
    exchange: str  # (M6): "true" log-ratio (original code) or "linearized" J (theta - theta_old) (paper eq. 22)
    theta_update: str  # "linesearch" (M5) (original code) or "closed_form" (M4)
    step_length: str  # (M4): "boundary" (eq. 22) or "penalized" (eq. 47 with lambda* >= 0)
    dual_init: float  # initial y of every edge (lambda_{e,i} = y, lambda_{e,j} = -y); finite
    drop_prob: float  # probability that a message on an edge is lost; in [0, 1)
    adv_norm: str  # "pooled" (by average consensus), "per_agent" or "none"
    parallel_endpoints: bool  # the two endpoint updates of an edge in two threads (same result)
    warm_start_cg: bool  # (M3) from this agent's previous direction
    cg_max_iter_warm: int  # CG iterations of a warm-started solve; >= 1

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"MATRPOSettings.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("iterations", "cg_max_iter_warm"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MATRPOSettings.{name} must be an integer >= 1, got {value!r}")
        if not (isinstance(self.penalty, (int, float)) and math.isfinite(self.penalty) and self.penalty > 0):
            raise ValueError(f"MATRPOSettings.penalty must be a finite float > 0, got {self.penalty!r}")
        if not 0.0 < self.graph_p <= 1.0:
            raise ValueError(f"MATRPOSettings.graph_p must be in (0, 1], got {self.graph_p!r}")
        if not math.isfinite(self.dual_init):
            raise ValueError(f"MATRPOSettings.dual_init must be finite, got {self.dual_init!r}")
        if not 0.0 <= self.drop_prob < 1.0:
            raise ValueError(f"MATRPOSettings.drop_prob must be in [0, 1), got {self.drop_prob!r}")


def edge_engine(graph: nx.Graph, dim: int, settings: MATRPOSettings, seed: int, iteration: int) -> EdgeConsensus:
    """The consensus state of one outer iteration, (M7): the one owner of the penalty beta and of the duals.

    Each endpoint update reads beta with its sums from ``engine.endpoint_terms(q)``. The duals start at
    y = ``admm.dual_init`` (lambda_{e,i} = y at the lower-indexed endpoint, C = +1, and -y at the other); the edge
    schedule and message losses are seeded by (run seed, 2, iteration), so the MPI backend's per-agent replicas
    draw the same as the in-process engine.
    """
    y = settings.dual_init
    return EdgeConsensus(
        graph, dim, penalty=settings.penalty, schedule=settings.edge_order, drop_prob=settings.drop_prob,
        dual_init=np.array([[y], [-y]]) if y else 0.0,  # broadcast to (edges, 2, dim)
        seed=np.random.default_rng(seed_sequence(seed, 2, iteration)),
    )


@dataclass(frozen=True)
class LocalUpdateInfo:
    """What one endpoint update did (agent-local diagnostics)."""

    accepted: bool
    kl: float
    lagrangian_before: float
    lagrangian_after: float
    cg_iterations: int
    cg_residual: float


@dataclass(frozen=True)
class LocalBatch:
    """Agent q's batch of one outer iteration, fixed at theta_old by :meth:`MATRPOAgent.prepare`.

    Everything the endpoint updates (M1)-(M6) of the ADMM iterations reuse; none of it changes before the next
    ``prepare``.
    """

    obs: torch.Tensor  # o^q_m, [M, obs_dim]
    joint_actions: torch.Tensor  # a_m, every head, [M, N] (continuous: [M, N, dim])
    advantages: torch.Tensor  # A^q, [M]
    theta_old: torch.Tensor  # [P]
    old_dist: MultiCategorical | MultiDiagGaussian  # pi^q(. | o_m; theta_old)
    old_output: torch.Tensor  # the policy's output at theta_old (logits [M, N, A]), the chunked KL's reference
    logp_old: torch.Tensor  # log pi^q(a^n_m | o_m; theta_old), [N, M]
    # d log pi(a^n | o) / d z_n for each distribution parameter z (logits; mean and log-std), [M, N, ...] each:
    # (M2)'s cotangents before the weights w
    score: tuple[torch.Tensor, ...]
    jacobian: FisherVectorProduct  # full batch at theta_old; its vjp is the J^T of (M2)
    fisher: FisherVectorProduct  # H of (M3), undamped, on every fvp_subsample_every-th sample
    evaluator: PolicyEvaluator  # pi^q at candidate parameters, the module untouched: (M5), (M6)

    def logratio(self, theta: torch.Tensor) -> torch.Tensor:
        """l^q(theta) = log pi^q(a^n | o; theta) - log pi^q(a^n | o; theta_old), [N, M]."""
        return self.evaluator.dist(theta).log_prob_per_head(self.joint_actions) - self.logp_old

    def kl(self, theta: torch.Tensor, bound: float) -> float:
        """KLbar(theta_old || theta): exact up to ``bound``; above it possibly a partial sum (enough to reject)."""
        return self.evaluator.kl_within(theta, self.old_output, bound)


def _scores(dist: MultiCategorical | MultiDiagGaussian, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """d log pi(a^n | o) / d z_n for each distribution parameter z, per sample and head: (M2)'s cotangents / w.

    Categorical heads: onehot(a^n) - pi_n on the logits. Gaussian heads: (a - mu) / sigma^2 on the mean and
    ((a - mu) / sigma)^2 - 1 on the log-std.
    """
    if isinstance(dist, MultiDiagGaussian):
        z = (actions - dist.mean) * torch.exp(-dist.log_std)
        return z * torch.exp(-dist.log_std), z * z - 1.0
    logits = dist.logits
    return (torch.nn.functional.one_hot(actions.long(), logits.shape[-1]).to(logits.dtype) - dist.probs,)


def _output(dist: MultiCategorical | MultiDiagGaussian) -> torch.Tensor:
    """The policy output ``dist`` was built from (the inverse of ``policy.distribution``)."""
    if isinstance(dist, MultiDiagGaussian):
        return torch.stack((dist.mean, dist.log_std), dim=-2)
    return dist.logits


class MATRPOAgent(Learner):
    """Agent q of MATRPO: N-head policy over its own observation, value net, and its private batch."""

    def __init__(self, owner: int, obs_dim: int, n_agents: int, n_actions: int, settings: MATRPOSettings,
                 trpo: TRPOSettings, learner: LearnerSettings, seed: np.random.SeedSequence, *, run_seed: int):
        super().__init__(owner, obs_dim, n_agents, n_actions, [owner], learner, seed, run_seed=run_seed)
        self.matrpo = settings
        self.trpo = trpo

    @property
    def warm_trpo(self) -> TRPOSettings:
        """The trust-region settings of a warm-started solve (M3): ``cg_max_iter_warm`` CG iterations."""
        return dataclasses.replace(self.trpo, cg_max_iter=self.matrpo.cg_max_iter_warm)

    # -- once per outer iteration ----------------------------------------------------------------------------------
    def prepare(self, obs: torch.Tensor, joint_actions: torch.Tensor, advantages: torch.Tensor) -> None:
        """Fix theta_old and build, once, the :class:`LocalBatch` the ADMM iterations reuse."""
        p = self.private
        policy = p.policy

        def dist_fn(o: torch.Tensor) -> MultiCategorical | MultiDiagGaussian:
            return policy.distribution(policy(o))

        # The J^T operator's build forward is the full-batch forward at theta_old: reuse its outputs.
        jacobian = fisher_vector_product(policy, dist_fn, obs, form="fast", damping=0.0, subsample_every=1)
        old_dist = jacobian.distribution
        p.batch = LocalBatch(
            obs=obs, joint_actions=joint_actions, advantages=advantages, theta_old=flat_params(policy).clone(),
            old_dist=old_dist, old_output=_output(old_dist), logp_old=old_dist.log_prob_per_head(joint_actions),
            score=_scores(old_dist, joint_actions), jacobian=jacobian,
            fisher=fisher_vector_product(policy, dist_fn, obs, form=self.trpo.fisher_form, damping=0.0,
                                         subsample_every=self.trpo.fvp_subsample_every),
            evaluator=PolicyEvaluator(policy, obs, policy.distribution),
        )
        p.warm_start = None  # (s, A s, s^T A s) of this agent's last solve (M3)
        p.linearization = None  # graph of J^T u at theta_old, built on first use (M6, "linearized")
        p.x = torch.zeros(p.batch.logp_old.numel(), dtype=torch.float64)

    # -- (M1)-(M6) -------------------------------------------------------------------------------------------------
    def local_update(self, terms: EndpointTerms) -> tuple[np.ndarray, LocalUpdateInfo]:
        """Endpoint update of eq. (22), (M1)-(M6), from agent q's own copies of its incident edges' state.

        Parameters
        ----------
        terms : consensus_admm.EndpointTerms
            sum_{e in E(q)} z_e and sum_{e in E(q)} lambda_{e,q} ([N*M] each), |E(q)| and the penalty beta, as the
            edge engine hands them to agent q (``EdgeConsensus.endpoint_terms``).

        Returns
        -------
        x : ndarray [N*M]   what agent q sends on the active edge (M6)
        info : LocalUpdateInfo
        """
        b = self.private.batch
        n, m = b.logp_old.shape
        z_sum = torch.from_numpy(terms.z_sum).view(n, m).to(b.advantages.dtype)
        dual_sum = torch.from_numpy(terms.dual_sum).view(n, m).to(b.advantages.dtype)
        # (M1)
        w = b.advantages.unsqueeze(0) - dual_sum + terms.penalty * z_sum
        # (M2)
        v = b.jacobian.vjp(tuple(score * (w.t() / m).unsqueeze(-1) for score in b.score))
        # (M3)
        s, cg, settings, curvature = self._direction(v)
        # (M4): to the KL boundary (T2); "penalized" also caps it at the unconstrained minimiser of the penalised
        # model, x* = H^{-1} V / (|E(q)| beta) (paper eq. 47 with lambda* = 0 when that point lies inside the region).
        step_size = max_step_length(s, curvature, settings.max_kl)
        if self.matrpo.step_length == "penalized" and math.isfinite(step_size):
            step_size = min(step_size, 1.0 / (terms.degree * terms.penalty))

        def lagrangian(theta: torch.Tensor) -> float:
            # (M5) L^q(theta), constants independent of theta dropped (they cancel in the acceptance test).
            lr = b.logratio(theta)
            surrogate = (torch.exp(lr.sum(0)) * b.advantages).mean()
            penalty = (lr * dual_sum).sum() + terms.penalty * (
                0.5 * terms.degree * (lr * lr).sum() - (lr * z_sum).sum())
            return float(-surrogate + penalty / m)

        theta, info = self._theta_update(v, s, step_size, cg, settings, lagrangian)
        # (M6)
        return self._message(theta, info.accepted), info

    def _direction(self, v: torch.Tensor):
        """(M3) s = (H + damping I)^{-1} V by CG; returns (s, CG info, the settings used, A s for (T2)).

        Warm start from this agent's previous direction s', rescaled by a line minimisation of the model,
        x0 = c s' with c = V^T s' / s'^T A s'. A s' = V' - r' is kept from that solve, so neither A x0 nor s^T A s
        costs a Fisher product (A = H + damping I).
        """
        p = self.private
        previous = p.warm_start if self.matrpo.warm_start_cg else None
        if previous is None:
            settings = self.trpo
            s, cg = natural_gradient_direction(p.batch.fisher, v, settings)
        else:
            direction, a_direction, shs = previous
            c = float(v @ direction) / shs
            settings = self.warm_trpo
            s, cg = natural_gradient_direction(p.batch.fisher, v, settings, x0=c * direction, ax0=c * a_direction)
        a_s = v - cg.residual
        # s^T A s: V^T s for CG started at zero (r is orthogonal to s; the original code's form), s^T (V - r) else.
        curvature = v if previous is None else a_s
        shs = float(curvature @ s) if previous is None else float(s @ curvature)
        if math.isfinite(shs) and shs > 0:
            p.warm_start = (s, a_s, shs)
        return s, cg, settings, curvature

    def _theta_update(self, v, s, step_size, cg, settings, lagrangian) -> tuple[torch.Tensor, LocalUpdateInfo]:
        """(M4) closed form or (M5) line search from theta_old along ``step_size * s``; writes theta into the policy."""
        b = self.private.batch
        policy = self.private.policy
        # L(theta_old): every log-ratio is 0 there, so the penalty vanishes and the surrogate is mean(A).
        before = -float(b.advantages.mean())
        if not bool(v.any()) or not math.isfinite(step_size):
            theta = b.theta_old
            info = LocalUpdateInfo(False, 0.0, before, before, cg.n_iter, cg.residual_norm)
        elif self.matrpo.theta_update == "linesearch":
            # (M5)
            full_step = step_size * s
            ls = backtracking_line_search(
                b.theta_old, full_step, kl_fn=lambda th: b.kl(th, settings.kl_bound), loss_fn=lagrangian,
                settings=settings, expected_improvement=float(v @ full_step), surrogate_before=-before, params=policy,
            )
            theta = ls.params
            info = LocalUpdateInfo(ls.accepted, ls.kl, before, -ls.surrogate_after, cg.n_iter, cg.residual_norm)
        else:
            # (M4) closed form (22): the CG direction scaled to the KL boundary, no line search.
            theta = b.theta_old + step_size * s
            info = LocalUpdateInfo(True, b.kl(theta, settings.kl_bound), before, lagrangian(theta), cg.n_iter,
                                   cg.residual_norm)
        set_flat_params(policy, theta)
        return theta, info

    def _message(self, theta: torch.Tensor, accepted: bool) -> np.ndarray:
        """(M6) x^q: the true log-ratios l^q(theta), or J (theta - theta_old) ("linearized"); 0 when not moved."""
        p = self.private
        b = p.batch
        if not accepted:
            x = torch.zeros_like(b.logp_old)
        elif self.matrpo.exchange == "true":
            x = b.logratio(theta)
        else:
            x = self._linearized_logratio(theta - b.theta_old)
        p.x = x.reshape(-1).to(torch.float64)
        return p.x.numpy().copy()

    def _linearized_logratio(self, delta: torch.Tensor) -> torch.Tensor:
        """J (theta - theta_old): the log-ratios linearised at theta_old (eq. 22), [N, M].

        By the double-backward identity J delta = d/du <J^T u, delta> (J^T u is linear in u): one reverse pass
        through the graph of J^T u, which is built once per outer iteration at theta_old. Reverse mode only, so it
        runs in the endpoint threads (``admm.parallel_endpoints``); ``torch.func.jvp``'s forward-mode AD levels are
        process-global and fail when two threads use them at once.
        """
        p = self.private
        if p.linearization is None:
            p.linearization = self._linearization()
        jt_u, u, params = p.linearization
        (jv,) = torch.autograd.grad(jt_u, u, grad_outputs=unflatten(delta, params), retain_graph=True)
        return jv.detach()

    def _linearization(self) -> tuple:
        """(J^T u with its graph, the dummy cotangent u [N, M], the parameter leaves at theta_old)."""
        b = self.private.batch
        policy = self.private.policy
        named = [(n, q) for n, q in policy.named_parameters() if q.requires_grad]
        # Leaves at theta_old, apart from the module's parameters (the endpoint updates overwrite those in place).
        params = [t.detach().requires_grad_() for t in unflatten(b.theta_old, [q for _, q in named])]
        with torch.enable_grad():
            out = functional_call(policy, dict(zip([n for n, _ in named], params)), (b.obs,))
            logp = policy.distribution(out).log_prob_per_head(b.joint_actions)
            u = torch.zeros_like(logp, requires_grad=True)
            jt_u = torch.autograd.grad(logp, params, grad_outputs=u, create_graph=True)
        return jt_u, u, params

    def current_x(self) -> np.ndarray:
        """The x^q this agent last sent (zeros before its first update of the iteration)."""
        return self.private.x.numpy()

    def final_diagnostics(self) -> tuple[float, float]:
        """(KL(theta_old || theta), surrogate improvement) of the parameters this agent ends the iteration with."""
        b = self.private.batch
        dist = b.evaluator.dist(flat_params(self.private.policy))
        ratio = torch.exp(dist.log_prob(b.joint_actions) - b.logp_old.sum(0))
        surrogate_gain = float(((ratio - 1.0) * b.advantages).mean())
        return float(b.old_dist.kl(dist).mean()), surrogate_gain

    def release(self) -> None:
        """Drop the per-iteration graphs."""
        p = self.private
        p.batch = p.warm_start = p.linearization = None


class MATRPO(TeamCheckpoint):
    """Fully decentralized MATRPO over a communication graph (see the module docstring for the math).

    Parameters
    ----------
    obs_dims, n_actions : per-agent observation sizes and action counts.
    settings : MATRPOSettings
        The consensus loop and the local update's switches.
    trpo : trpo_core.TRPOSettings
        The local trust-region step (``max_kl`` = delta/N, CG, Fisher, line search).
    learner : LearnerSettings
        Each agent's networks, advantages, value regression and action noise.
    seed : int
        The run's seed: every agent's streams, the graph draw and the edge schedules derive from it.
    graph : networkx.Graph, optional
        Any connected graph on the agent indices ``0..N-1``; default ``settings.graph`` (ring, as the paper).
    """

    name = "matrpo"

    def __init__(self, obs_dims, n_actions, settings: MATRPOSettings, trpo: TRPOSettings, learner: LearnerSettings,
                 *, seed: int, graph: nx.Graph | None = None):
        n_agents = len(obs_dims)
        if len(set(n_actions)) != 1:
            raise ValueError(f"MATRPO's joint-policy heads need equal action counts, got {n_actions}")
        self.settings, self.learner_settings, self.seed = settings, learner, seed
        self.n_agents = n_agents
        self.agents = [
            MATRPOAgent(i, obs_dims[i], n_agents, n_actions[i], settings, trpo, learner, seed_sequence(seed, 1, i),
                        run_seed=seed)
            for i in range(n_agents)
        ]
        if graph is None:
            graph = communication_graph(settings.graph, n_agents, p=settings.graph_p, seed=seed)
        elif set(graph.nodes) != set(range(n_agents)):
            raise ValueError(f"graph nodes must be the agent indices 0..{n_agents - 1}, got {list(graph.nodes)}")
        # Node i of the engine is agent i: rebuild with the nodes inserted in agent order.
        self.graph = nx.Graph()
        self.graph.add_nodes_from(range(n_agents))
        self.graph.add_edges_from(graph.edges)
        self._pool = ThreadPoolExecutor(max_workers=2) if settings.parallel_endpoints else None
        self._value_pool = value_fit_executor(learner.concurrent_value_fit)

    def _map(self, fn, items) -> list:
        """Run independent per-agent work, in the two worker threads when ``admm.parallel_endpoints``."""
        return list(self._pool.map(fn, items)) if self._pool else [fn(i) for i in items]

    # -- rollout ---------------------------------------------------------------------------------------------------
    def act(self, obs: list[torch.Tensor], *, greedy: bool = False) -> torch.Tensor:
        """Each agent samples its own head from pi^i(. | o^i) (the other heads' samples would be discarded);
        ``greedy``: takes its mode."""
        return act_independently(self.agents, obs, greedy=greedy)

    # -- one outer iteration ---------------------------------------------------------------------------------------
    def update(self, rollout: Rollout, iteration: int) -> dict[str, float]:
        t, b = rollout.n_steps, rollout.n_envs
        m = t * b
        joint_actions = samples(rollout.actions)  # [M, N], env-major like every per-sample tensor below
        metrics: dict[str, float] = {}
        t_start = time.perf_counter()

        def own_advantages(i: int):
            # Agent i: GAE on its own reward with its own value network.
            with acting_as(i):
                return tuple(samples(t) for t in self.agents[i].own_advantages(rollout, i))

        gae = self._map(own_advantages, range(self.n_agents))
        advs = [a for a, _, _ in gae]
        # Value regression (the original code runs it before the policy step, §3); the policy step does not read V,
        # so it runs alongside the consensus when ``concurrent_value_fit``.
        value_fits = ValueFits(self._value_pool, self.agents, [samples(o) for o in rollout.obs],
                               [r for _, r, _ in gae], [v for _, _, v in gae],
                               stacked=self.learner_settings.stack_value_fits)
        t_value = time.perf_counter()
        advs, norm_floats = self._normalize_advantages(advs, iteration)

        def prepare(i: int) -> None:
            with acting_as(i):
                self.agents[i].prepare(samples(rollout.obs[i]), joint_actions, advs[i])

        self._map(prepare, range(self.n_agents))
        t_prepare = time.perf_counter()
        metrics.update(self._consensus(m, iteration))
        t_consensus = time.perf_counter()
        fits, fit_seconds = value_fits.result()
        for i, vf in enumerate(fits):
            metrics[f"value/loss_agent_{i}"] = vf["value_loss"]
            metrics[f"value/explained_variance_agent_{i}"] = vf["explained_variance"]
        t_joined = time.perf_counter()
        metrics["comm/floats_adv_norm"] = norm_floats
        def finish(i: int) -> tuple[float, float]:
            with acting_as(i):
                out = self.agents[i].final_diagnostics()
                self.agents[i].release()
            return out

        for i, (kl, gain) in enumerate(self._map(finish, range(self.n_agents))):
            metrics[f"trpo/kl_agent_{i}"] = kl
            metrics[f"trpo/surrogate_improvement_agent_{i}"] = gain
        metrics["time/advantages"] = t_value - t_start
        metrics["time/value_fit"] = fit_seconds  # overlaps the consensus when concurrent_value_fit
        metrics["time/value_fit_wait"] = t_joined - t_consensus
        metrics["time/prepare"] = t_prepare - t_value
        metrics["time/consensus"] = t_consensus - t_prepare
        metrics["trpo/kl"] = float(np.mean([metrics[f"trpo/kl_agent_{i}"] for i in range(self.n_agents)]))
        metrics["trpo/surrogate_improvement"] = float(
            np.sum([metrics[f"trpo/surrogate_improvement_agent_{i}"] for i in range(self.n_agents)])
        )
        metrics["value/loss"] = float(np.mean([metrics[f"value/loss_agent_{i}"] for i in range(self.n_agents)]))
        metrics["value/explained_variance"] = float(
            np.mean([metrics[f"value/explained_variance_agent_{i}"] for i in range(self.n_agents)])
        )
        return metrics

    def _normalize_advantages(self, advs: list[torch.Tensor], iteration: int) -> tuple[list[torch.Tensor], float]:
        mode = self.settings.adv_norm
        if mode == "none":
            return advs, 0.0
        if mode == "per_agent":
            return [standardize(a, float(a.mean()), float(a.std())) for a in advs], 0.0
        # "pooled": the network-wide mean of (mean_i, mean of squares_i) by average consensus (equal M per agent).
        local = np.array([[float(a.mean()), float((a.double() ** 2).mean())] for a in advs])
        result = solve(
            [Averaging(local[i]) for i in range(self.n_agents)],
            self.graph,
            ADMMSettings(method="sync", eps_abs=1e-12, eps_rel=1e-10, max_iter=5000),
            seed=self.seed + iteration,
        )
        out = []
        n = len(advs[0])
        for i, a in enumerate(advs):
            mean, mean_sq = result.x[i]
            # Unbiased std, as torch.std on the pooled sample would give.
            var = max(mean_sq - mean * mean, 0.0) * (self.n_agents * n) / max(self.n_agents * n - 1, 1)
            out.append(standardize(a, mean, math.sqrt(var)))
        return out, float(result.floats_sent)

    def _consensus(self, m: int, iteration: int) -> dict[str, float]:
        n = self.n_agents
        engine = edge_engine(self.graph, n * m, self.settings, self.seed, iteration)
        accepted = np.zeros(n)
        updates = np.zeros(n)
        lag_gain = np.zeros(n)
        dual = []
        dropped = 0
        def endpoint(q: int):
            # Agent q's own copies of its incident edges' state; nothing else enters its update.
            terms = engine.endpoint_terms(q)
            with acting_as(q):
                return self.agents[q].local_update(terms)

        for _ in range(self.settings.iterations):
            e = engine.next_edge()
            i, j = (int(v) for v in engine.edges[e])
            # The two endpoint updates are independent (each reads only its own state): run them concurrently.
            results = self._map(endpoint, (i, j))
            xs = {}
            for q, (x, info) in zip((i, j), results):
                xs[q] = x
                accepted[q] += info.accepted
                updates[q] += 1
                lag_gain[q] += info.lagrangian_before - info.lagrangian_after
            ex = engine.exchange(e, xs[i], xs[j])
            dropped += not ex.delivered
            dual.append(float(ex.dual_residual))
        # Consensus error: the largest disagreement of the agents' current log-ratios across any edge.
        xs_now = [a.current_x() for a in self.agents]
        cons = max(float(np.max(np.abs(xs_now[a] - xs_now[c]))) for a, c in engine.edges)
        tail = max(1, len(dual) // 10)
        out = {
            "admm/consensus_error": cons,
            # inf-norms: max over edges of ||x_q - z_e|| with the agents' final x, and rho ||z_e - z_e_prev|| over
            # the last 10% of exchanges.
            "admm/primal_residual": engine.primal_residual(np.stack(xs_now)),
            "admm/dual_residual": float(np.mean(dual[-tail:])),
            "admm/edge_activations": float(self.settings.iterations),
            "trpo/accepted_fraction": float(accepted.sum() / max(updates.sum(), 1)),
            "trpo/lagrangian_improvement": float(lag_gain.sum() / max(updates.sum(), 1)),
            "admm/dropped_exchanges": float(dropped),
            # The engine counts what crossed each edge: x^q (N*M floats) per message, plus lambda_{e,q} while the
            # edge's duals are not yet known to cancel (lambda_{e,i} + lambda_{e,j} != 0).
            "comm/messages_total": float(engine.messages_sent.sum()),
            "comm/floats_sent_total": float(engine.floats_sent.sum()),
        }
        for q in range(n):
            out[f"comm/floats_sent_agent_{q}"] = float(engine.floats_sent[q])
        return out
