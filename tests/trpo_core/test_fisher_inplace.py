"""The fast FVP's MLP path with in-place activation factors, ``out=`` gradients and reused work buffers must give
bit-for-bit the result of the plain out-of-place form of (F2')/(F4') it replaced (written out below as the
reference), on every module that takes the path, in float32 and float64, and from several threads at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from test_trpo_fisher_paths import CASES, _case

from torch import nn

from trpo_core import MultiCategorical, fisher_vector_product, unflatten


def _reference_backward(chain, g, grads):
    """(F4') out of place, then one concatenation (the form before the in-place lever)."""
    for pos in range(len(chain.layers) - 1, -1, -1):
        layer = chain.layers[pos]
        if layer[0] == "linear":
            _, x, w, iw, ib = layer
            if iw is not None:
                grads[iw] = g.t() @ x
            if ib is not None:
                grads[ib] = g.sum(0)
            if pos > 0:
                g = g @ w
        elif layer[1] is not None:
            g = g * layer[1]
    return torch.cat([(gr if gr is not None else torch.zeros_like(p)).reshape(-1)
                      for gr, p in zip(grads, chain.theta)])


def _reference_vjp(chain, w_out):
    if chain.view_tail:
        return _reference_backward(chain, w_out[0].reshape(chain.y.shape), [None] * len(chain.theta))
    back = torch.autograd.grad(chain.outs, chain.tail_inputs, grad_outputs=w_out, retain_graph=True,
                               allow_unused=True, materialize_grads=True)
    grads = [None] * len(chain.theta)
    for k, i in enumerate(chain.others):
        grads[i] = back[k + 1]
    return _reference_backward(chain, back[0], grads)


def _reference_fvp(op, v):
    """(F2')-(F5) out of place, as before the lever."""
    chain = op._chain
    parts = unflatten(v, chain.theta)
    t = None
    for layer in chain.layers:
        if layer[0] == "linear":
            _, x, w, iw, ib = layer
            new = t @ w.t() if t is not None else None
            if iw is not None:
                new = x @ parts[iw].t() if new is None else new.addmm_(x, parts[iw].t())
            if ib is not None:
                new = parts[ib].expand(x.shape[0], -1) if new is None else new.add_(parts[ib])
            t = new
        elif t is not None and layer[1] is not None:
            t = t * layer[1]
    tangents = [torch.zeros_like(z) for z in chain.outs_all]
    with torch.enable_grad():
        if chain.view_tail:
            (i,) = chain.used
            tangents[i] = t.view(chain.outs_all[i].shape)
        else:
            tangents_in = [t] + [parts[i] for i in chain.others]
            jz = torch.autograd.grad([g for _, g in chain.gt], chain.u,
                                     grad_outputs=[tangents_in[k] for k, _ in chain.gt],
                                     retain_graph=True, allow_unused=True, materialize_grads=True)
            for k, i in enumerate(chain.used):
                tangents[i] = jz[k]
        fz = op._old.fisher_vp(tuple(tangents))
        fv = _reference_vjp(chain, [fz[i] * (1.0 / op.n_samples) for i in chain.used])
    return (fv + op.damping * v if op.damping else fv).detach()


class _Policy(nn.Module):
    """MATRPO's policy shape at full size: 2 x 128 SELU trunk, one linear layer for all heads, view in forward."""

    def __init__(self, obs_dim, n_heads, n_actions):
        super().__init__()
        self.shape = (n_heads, n_actions)
        self.trunk = nn.Sequential(nn.Linear(obs_dim, 128), nn.SELU(), nn.Linear(128, 128), nn.SELU())
        self.heads = nn.Linear(128, n_heads * n_actions)

    def forward(self, o):
        return self.heads(self.trunk(o)).view(o.shape[0], *self.shape)


MLP_CASES = [name for name in CASES if _case(name)[3] == "mlp"]


@pytest.mark.parametrize("name", MLP_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fvp_and_vjp_bit_for_bit_equal_to_the_out_of_place_form(name, dtype):
    module, dist_fn, in_dim, _ = _case(name)
    module = module.to(dtype)
    gen = torch.Generator().manual_seed(3)
    obs = torch.randn(40, in_dim, generator=gen, dtype=dtype)
    op = fisher_vector_product(module, dist_fn, obs, damping=0.1, subsample_every=2)
    assert op.path == "mlp"
    for _ in range(3):  # repeated calls reuse the work buffers
        v = torch.randn(op.dim, generator=gen, dtype=dtype)
        assert torch.equal(op(v), _reference_fvp(op, v))
        w = tuple(torch.randn(z.shape, generator=gen, dtype=dtype) for z in op.distribution.params)
        kept = tuple(c.clone() for c in w)
        used = [w[i] for i in op._params_used]
        assert torch.equal(op.vjp(w), _reference_vjp(op._chain, used).detach())
        assert all(torch.equal(a, b) for a, b in zip(w, kept)), "vjp must not write into the caller's cotangents"


def test_matrpo_policy_bit_for_bit_from_two_threads_and_varying_batches():
    """MATRPO's 2 x 128 SELU policy in float32: the operators used by two endpoint threads at once, on batches of
    different sizes (thread-local buffers resized), equal the reference every time."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(4)
    policy = _Policy(18, 3, 5)
    obs = torch.randn(1000, 18, generator=gen)

    def dist_fn(o):
        return MultiCategorical(policy(o))

    ops = [fisher_vector_product(policy, dist_fn, obs[:rows], subsample_every=k) for rows, k in
           ((1000, 5), (1000, 1), (600, 3))]
    jobs = []
    for op in ops:
        for _ in range(4):
            jobs.append((op, torch.randn(op.dim, generator=gen),
                         torch.randn(op.distribution.logits.shape, generator=gen)))

    def run(job):
        op, v, c = job
        return op(v), op.vjp((c,))

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(run, jobs * 2))
    for (op, v, c), (fv, jtw) in zip(jobs * 2, results):
        assert torch.equal(fv, _reference_fvp(op, v))
        assert torch.equal(jtw, _reference_vjp(op._chain, [c]).detach())
