"""Single-agent TRPO on gymnasium's CartPole-v1, built only from trpo_core's public names.

The end-to-end check of trpo_core (issue 4): a 64x64 tanh categorical policy, a separate 64x64 tanh value network
fitted by minibatch Adam, GAE(0.99, 0.97), and one ``trust_region_step`` per iteration (fast Fisher-vector product,
HARL acceptance rule, max_kl 0.02) on 4,096 environment steps from 8 environments. Episodes cut by the 500-step
time limit are *truncated* and bootstrap from the value of their final observation; pole falls are *terminated*.

Evaluation is deterministic (argmax action) over 20 episodes with seeds disjoint from training. The budget is fixed
(60 iterations, about 246k environment steps); on the 2-vCPU machine it takes about 10 s with one torch thread.

Run:  python examples/trpo_cartpole.py  (prints one line per iteration and the evaluation mean)
"""

from __future__ import annotations

import argparse
import time
from collections import deque
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from trpo_core import (
    Categorical,
    GAESettings,
    TRPOSettings,
    ValueFitSettings,
    ValueFitter,
    compute_gae,
    fisher_vector_product,
    trust_region_step,
)


@dataclass(frozen=True)
class CartPoleConfig:
    """Budget and hyperparameters of the CartPole check."""

    # parallel environments; rollout steps per environment per iteration (batch = n_envs * n_steps)
    n_envs: int = 8
    n_steps: int = 512
    # iterations (60 x 4,096 = 245,760 environment steps); optional early stop once the mean stochastic return of the
    # last 20 training episodes reaches target_return (None: always run max_iterations)
    max_iterations: int = 60
    target_return: float | None = None
    # hidden width of both networks (two tanh layers)
    hidden: int = 64
    trpo: TRPOSettings = TRPOSettings.harl(max_kl=0.02)
    gae: GAESettings = GAESettings(gamma=0.99, lam=0.97)
    value: ValueFitSettings = ValueFitSettings(lr=1e-3, epochs=5, minibatch_size=256)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_envs", "n_steps", "max_iterations", "hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")


def mlp(n_in: int, n_out: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                         nn.Linear(hidden, n_out))


def train(config: CartPoleConfig = CartPoleConfig(), verbose: bool = False) -> tuple[nn.Module, list[dict]]:
    """Train a CartPole policy with TRPO; return it and per-iteration diagnostics."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    envs = [gym.make("CartPole-v1") for _ in range(config.n_envs)]
    obs = np.stack([env.reset(seed=int(rng.integers(2**31)))[0] for env in envs]).astype(np.float32)
    policy = mlp(4, 2, config.hidden)
    with torch.no_grad():
        policy[-1].weight.mul_(0.01)  # near-uniform initial policy
    value = mlp(4, 1, config.hidden)
    fitter = ValueFitter(value, config.value, seed=rng)
    sampler = torch.Generator().manual_seed(config.seed)
    ep_returns = np.zeros(config.n_envs)
    recent: deque[float] = deque(maxlen=20)
    history = []
    T, N = config.n_steps, config.n_envs
    for it in range(config.max_iterations):
        t0 = time.perf_counter()
        buf_obs = np.zeros((T, N, 4), np.float32)
        buf_next = np.zeros((T, N, 4), np.float32)
        buf_act = np.zeros((T, N), np.int64)
        buf_rew = np.zeros((T, N), np.float32)
        buf_term = np.zeros((T, N), bool)
        buf_trunc = np.zeros((T, N), bool)
        for t in range(T):
            with torch.no_grad():
                act = Categorical(policy(torch.from_numpy(obs))).sample(generator=sampler).numpy()
            buf_obs[t], buf_act[t] = obs, act
            for i, env in enumerate(envs):
                o, r, term, trunc, _ = env.step(int(act[i]))
                buf_rew[t, i], buf_term[t, i], buf_trunc[t, i] = r, term, trunc
                buf_next[t, i] = o  # the final observation when the episode ended: truncation bootstraps from it
                ep_returns[i] += r
                if term or trunc:
                    recent.append(ep_returns[i])
                    ep_returns[i] = 0.0
                    o, _ = env.reset()
                obs[i] = o
        o_t = torch.from_numpy(buf_obs.reshape(T * N, 4))
        a_t = torch.from_numpy(buf_act.reshape(T * N))
        with torch.no_grad():
            v = value(o_t).view(T, N)
            nv = value(torch.from_numpy(buf_next.reshape(T * N, 4))).view(T, N)
        adv, ret = compute_gae(torch.from_numpy(buf_rew), v, nv, torch.from_numpy(buf_term),
                               torch.from_numpy(buf_trunc), gamma=config.gae.gamma, lam=config.gae.lam)
        adv = adv.reshape(-1)
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        with torch.no_grad():
            old = Categorical(policy(o_t)).detach()
            logp_old = old.log_prob(a_t)

        def surrogate(_theta=None):
            return (torch.exp(Categorical(policy(o_t)).log_prob(a_t) - logp_old) * adv).mean()

        def kl(_theta=None):
            return old.kl(Categorical(policy(o_t))).mean()

        fvp = fisher_vector_product(policy, lambda o: Categorical(policy(o)), o_t, form=config.trpo.fisher_form,
                                    subsample_every=config.trpo.fvp_subsample_every)
        _, info = trust_region_step(policy, fvp, kl_fn=kl, surrogate_fn=surrogate, settings=config.trpo)
        vinfo = fitter.fit(o_t, ret.reshape(-1))
        mean_ret = float(np.mean(recent)) if recent else float("nan")
        history.append(dict(iteration=it, mean_return=mean_ret, kl=info.kl, accepted=info.accepted,
                            backtracks=info.n_backtracks, value_loss=vinfo.loss_after,
                            seconds=time.perf_counter() - t0))
        if verbose:
            print(f"it {it:3d} return {mean_ret:6.1f} kl {info.kl:.4f} acc {info.accepted} "
                  f"bt {info.n_backtracks} vloss {vinfo.loss_after:.3f} {time.perf_counter() - t0:.2f}s", flush=True)
        if config.target_return is not None and len(recent) == recent.maxlen and mean_ret >= config.target_return:
            break
    for env in envs:
        env.close()
    return policy, history


def evaluate(policy: nn.Module, n_episodes: int = 20, seed: int = 10_000) -> list[float]:
    """Deterministic (argmax) returns of ``n_episodes`` CartPole-v1 episodes, seeds seed .. seed + n - 1."""
    env = gym.make("CartPole-v1")
    returns = []
    for k in range(n_episodes):
        o, _ = env.reset(seed=seed + k)
        total, done = 0.0, False
        while not done:
            with torch.no_grad():
                a = int(Categorical(policy(torch.as_tensor(o, dtype=torch.float32))).mode())
            o, r, term, trunc, _ = env.step(a)
            total += r
            done = term or trunc
        returns.append(total)
    env.close()
    return returns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (small networks: 1 is fastest)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    policy, history = train(CartPoleConfig(seed=args.seed), verbose=True)
    returns = evaluate(policy)
    steps = len(history) * CartPoleConfig().n_envs * CartPoleConfig().n_steps
    print(f"iterations {len(history)}  env steps {steps}  train time {time.perf_counter() - t0:.1f}s  "
          f"eval mean return {np.mean(returns):.1f} (min {np.min(returns):.0f})")


if __name__ == "__main__":
    main()
