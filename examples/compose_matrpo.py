"""A decentralized MATRPO assembled by hand from the library's parts, for researchers who want to change one piece.

``marl.MATRPO`` is the tuned implementation (line search, warm-started CG, chunked KL, threads, privacy guard);
this script is the same algorithm in its plainest form, so each step of the paper's eq. (22) is one visible line:

* the environment: ``marl.envs.make_vector_env`` (batched Cooperative Navigation, private rewards);
* per agent q: an N-head policy pi^q(a^1..a^N | o^q) and a value network (``marl.networks``), a value regression
  (``trpo_core.ValueFitter``) and GAE on its own reward (``trpo_core.compute_gae``);
* a rollout in which each agent samples only its own head (``marl.rollout.collect_rollout``);
* consensus on the per-head log-ratios l^q = log pi^q(a | o^q) - log pi^q_old over the ring, driven one edge at a
  time by ``consensus_admm.EdgeConsensus``; each endpoint's local step is a trust-region step from ``trpo_core``:
      (M1) w^q = A^q - sum_e lambda_{e,q} + beta sum_e z_e
      (M2) V^q = (1/M) sum_n J_n^T w_n              (autograd of sum_{n,m} w_{n,m} log pi_n / M at theta_old)
      (M3) s^q = (H^q + damping I)^{-1} V^q         (``natural_gradient_direction``: CG on Fisher products)
      (M4) Delta = sqrt(2 delta/N / s^T H s) s       (``max_step_length``: the quadratic model's KL boundary)
      (M5) backtrack theta_old + 0.5^k Delta until KL <= 1.5 delta/N and the augmented Lagrangian
           L(theta) = -(1/M) sum_m exp(sum_n l_{n,m}) A_m + (1/M) sum_{n,m} [lambda l + (beta d/2) l^2 - beta z l]
           does not increase (``backtracking_line_search``; else theta = theta_old)
      (M6) x^q = l^q(theta^q), sent on the edge; ``EdgeConsensus.exchange`` does z_e and the duals (M7).

Nothing but x^q crosses an edge; observations, rewards, advantages and parameters stay with their agent.
Swap any piece (another graph, ``schedule="random"``, the linearised exchange J (theta - theta_old), the closed form
theta_old + Delta without (M5)) and rerun. (Without the line search the boundary steps of (M4) overshoot: their true
KL is several times delta/N on this task, and the team return gets worse.)

Run:  python examples/compose_matrpo.py --iterations 20   (prints the team return per iteration)
"""

from __future__ import annotations

import argparse
import math

import networkx as nx
import numpy as np
import torch

from consensus_admm import EdgeConsensus, EndpointTerms
from marl.envs import make_vector_env
from marl.networks import MultiHeadPolicy, ValueNet
from marl.rollout import collect_rollout, next_values
from trpo_core import (
    MultiCategorical,
    TRPOSettings,
    ValueFitSettings,
    ValueFitter,
    backtracking_line_search,
    compute_gae,
    fisher_vector_product,
    flat_params,
    max_step_length,
    natural_gradient_direction,
    set_flat_params,
)


class Agent:
    """What one agent owns: its policy over the joint action, its value network, and this iteration's batch."""

    def __init__(self, index: int, obs_dim: int, n_agents: int, hidden: tuple[int, ...], seed: int):
        torch.manual_seed(seed)
        self.index = index
        self.policy = MultiHeadPolicy(obs_dim, n_agents, 5, hidden)
        self.value = ValueNet(obs_dim, hidden)
        self.fitter = ValueFitter(self.value, ValueFitSettings(lr=3e-4, epochs=3, minibatch_size=64), seed=seed)
        self.sampler = torch.Generator().manual_seed(seed)

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """Sample this agent's own head only (the other heads model its neighbours' actions)."""
        return MultiCategorical(self.policy(obs)[:, [self.index]]).sample(self.sampler)

    def prepare(self, obs, actions, rewards, rollout, gamma=0.995, lam=0.95) -> None:
        """GAE on the agent's own reward, then fix theta_old, log pi_old and the Fisher product (M3's operator)."""
        t, b = rewards.shape
        with torch.no_grad():
            values = self.value(obs.reshape(t * b, -1)).reshape(t, b)
            nxt = next_values(self.value, obs, rollout.last_obs[self.index], rollout.done_index,
                              rollout.final_obs[self.index], values)
            adv, ret = compute_gae(rewards, values, nxt, rollout.terminated, rollout.truncated, gamma=gamma, lam=lam)
        self.fitter.fit(obs.reshape(t * b, -1), ret.reshape(-1))
        self.obs, self.actions = obs.reshape(t * b, -1), actions.reshape(t * b, -1)
        adv = adv.reshape(-1)
        self.adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        self.theta_old = flat_params(self.policy).clone()
        with torch.no_grad():
            self.logp_old = self.log_probs()
            self.old_dist = MultiCategorical(self.policy(self.obs))
        self.fvp = fisher_vector_product(self.policy, lambda o: MultiCategorical(self.policy(o)), self.obs,
                                         subsample_every=5)

    def log_probs(self) -> torch.Tensor:
        """log pi^q(a^n_m | o^q_m) at the current parameters, [N, M]."""
        return MultiCategorical(self.policy(self.obs)).log_prob_per_head(self.actions)

    def local_update(self, terms: EndpointTerms, settings: TRPOSettings) -> np.ndarray:
        """One endpoint update of eq. (22) from the engine's terms for this agent (its sums over its edges, its
        degree, the penalty beta); returns x^q = l^q(theta^q), flat [N*M]."""
        n, m = self.logp_old.shape
        zs = torch.from_numpy(terms.z_sum).view(n, m).float()
        ds = torch.from_numpy(terms.dual_sum).view(n, m).float()
        penalty, degree = terms.penalty, terms.degree
        set_flat_params(self.policy, self.theta_old)  # every ADMM iteration restarts from theta_old
        w = self.adv.unsqueeze(0) - ds + penalty * zs  # (M1)
        objective = (w * self.log_probs()).sum() / m
        g = torch.cat([p.reshape(-1) for p in torch.autograd.grad(objective, list(self.policy.parameters()))])  # (M2)
        s, _ = natural_gradient_direction(self.fvp, g, settings)  # (M3)
        step = max_step_length(s, g, settings.max_kl)  # (M4): s^T g = s^T A s for CG started at zero
        if math.isfinite(step):

            @torch.no_grad()
            def kl(theta):
                return float(self.old_dist.kl(MultiCategorical(self.policy(self.obs))).mean())

            @torch.no_grad()
            def lagrangian(theta):
                lr = self.log_probs() - self.logp_old
                penalty_terms = (lr * ds).sum() + penalty * (0.5 * degree * (lr * lr).sum() - (lr * zs).sum())
                return float(-(torch.exp(lr.sum(0)) * self.adv).mean() + penalty_terms / m)

            backtracking_line_search(self.theta_old, step * s, kl_fn=kl, loss_fn=lagrangian, settings=settings,
                                     params=self.policy)  # (M5): leaves the accepted theta (or theta_old) in place
        with torch.no_grad():
            return (self.log_probs() - self.logp_old).reshape(-1).double().numpy()  # (M6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-agents", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=20, help="outer iterations (rollout + consensus)")
    parser.add_argument("--n-envs", type=int, default=100)
    parser.add_argument("--steps", type=int, default=100, help="steps per environment per iteration")
    parser.add_argument("--admm-iterations", type=int, default=100, help="edge activations per iteration")
    parser.add_argument("--penalty", type=float, default=1.0, help="ADMM penalty beta")
    parser.add_argument("--max-kl", type=float, default=0.003, help="per-agent trust region delta/N")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    n = args.n_agents
    venv = make_vector_env("cooperative_navigation", n_envs=args.n_envs, n_agents=n, seed=args.seed)
    agents = [Agent(i, venv.obs_dims[i], n, (args.hidden, args.hidden), args.seed * 1000 + i) for i in range(n)]
    graph = nx.cycle_graph(n) if n > 2 else nx.path_graph(n)
    settings = TRPOSettings.matrpo(max_kl=args.max_kl)
    obs = venv.reset(seed=args.seed)
    for it in range(args.iterations):
        rollout, obs = collect_rollout(
            venv, lambda o: torch.cat([a.act(o[i]) for i, a in enumerate(agents)], dim=1), obs, args.steps
        )
        for i, agent in enumerate(agents):  # each agent: its own observation and its own reward only
            agent.prepare(rollout.obs[i], rollout.actions, rollout.rewards[..., i], rollout)
        m = args.n_envs * args.steps
        engine = EdgeConsensus(graph, n * m, penalty=args.penalty, schedule="cyclic", seed=args.seed + it)
        x = np.zeros((n, n * m))  # each agent's latest log-ratios
        for _ in range(args.admm_iterations):
            e = engine.next_edge()
            i, j = (int(v) for v in engine.edges[e])
            for q in (i, j):
                # agent q's own copies of its edges' state, its degree and the engine's penalty
                x[q] = agents[q].local_update(engine.endpoint_terms(q), settings)
            engine.exchange(e, x[i], x[j])  # (M7): z_e and the two duals
        team = [float(ep["return"].sum()) for ep in rollout.episodes]
        disagreement = max(float(np.abs(x[a] - x[b]).max()) for a, b in graph.edges)
        print(f"iteration {it:3d}  team return {np.mean(team):8.1f}  consensus error {disagreement:.3g}", flush=True)


if __name__ == "__main__":
    main()
