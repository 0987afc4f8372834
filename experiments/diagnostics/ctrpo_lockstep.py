"""Diagnostic (issue 11): C-TRPO on Treasure N=8 with *lockstep* noise: one uniform per step shared by all heads
of the centralized policy (so all agents take the same action while the logits agree), the exploration that
MATRPO's `sampling_noise=shared` produces. Run: python ctrpo_lockstep.py OUT STEPS SEED [--set K=V ...] (resumable)."""
import sys
from pathlib import Path
import torch
import marl.algos.learner as learner
from marl.__main__ import main


def lockstep_sample(dist, generator, shared, *, greedy=False):
    if greedy:
        return dist.mode()
    if shared:
        b, n, a = dist.logits.shape
        return dist.sample_gumbel(torch.rand((b, 1, a), generator=generator).expand(b, n, a))
    return dist.sample(generator)


learner.sample_actions = lockstep_sample
out, steps = sys.argv[1], sys.argv[2]
seed = sys.argv[3] if len(sys.argv) > 3 else "0"
if (Path(out) / "checkpoint.pt").exists():
    sys.exit(main(["train", "--resume", out, "--steps", steps, "--no-progress"]))
sys.exit(main(["train", "--algo", "ctrpo", "--env", "treasure_collection", "--n-agents", "8", "--steps", steps,
               "--seed", seed, "--out", out, "--no-progress", "--set", "sampling_noise=shared",
               "--set", "torch_threads=1"] + sys.argv[4:]))
