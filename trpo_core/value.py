"""Value-function regression by minibatch Adam, with the optimizer state kept across calls.

Problem: fit V_phi(o) to the GAE targets R_t (:func:`compute_gae`, eq. G3) by k epochs of minibatch Adam on

(V1) loss(phi) = (1/B) sum_b (V_phi(o_b) - R_b)^2     over each minibatch of size B,

as MATRPO (``AgentModel.vfupdate``: Adam, ``vf_iters`` epochs, minibatch 64) and baselines TRPO do. The Adam moments
persist from one call to the next, as in those implementations, which create the optimizer once.

References
----------
Schulman et al. 2016 (GAE), §5 (value function by regression on the targets); Kingma & Ba, Adam, 2015.
matrpo-reference-code.md §3.

Departures
----------
No trust region on the value function (GAE §5 uses one); plain Adam is what HARL and MATRPO run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ._mlp import Recorder, chain_of
from .settings import ValueFitSettings

__all__ = ["ValueFitInfo", "ValueFitter", "fit_stacked"]


@dataclass(frozen=True)
class ValueFitInfo:
    """Diagnostics of one :meth:`ValueFitter.fit` call."""

    # quality: full-batch mean squared error before and after the call
    loss_before: float
    loss_after: float
    # algorithm: Adam steps taken in this call
    n_updates: int


class ValueFitter:
    """Minibatch-Adam regression of a value network onto returns, eq. (V1).

    Parameters
    ----------
    module : torch.nn.Module
        V_phi; ``module(*inputs)`` returns shape [batch] or [batch, 1].
    settings : ValueFitSettings
    seed : int, numpy.random.Generator or None
        Drives the minibatch permutations (converted once, at construction).

    Example
    -------
    >>> net = torch.nn.Linear(2, 1)
    >>> fitter = ValueFitter(net, ValueFitSettings(lr=0.05, epochs=20, minibatch_size=16), seed=0)
    >>> x = torch.randn(64, 2); y = x.sum(1)
    >>> info = fitter.fit(x, y)
    >>> info.loss_after < info.loss_before
    True
    """

    def __init__(self, module: nn.Module, settings: ValueFitSettings, seed: int | np.random.Generator | None = None):
        self.module = module
        self.settings = settings
        params = [p for p in module.parameters() if p.requires_grad]
        try:
            # The fused kernel (same update rule) is about 20% faster for small networks on CPU (many small steps).
            self.optimizer = torch.optim.Adam(params, lr=settings.lr, fused=True)
        except (RuntimeError, TypeError, ValueError):  # older torch, or a device/dtype the fused kernel lacks
            self.optimizer = torch.optim.Adam(params, lr=settings.lr)
        self._rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    def _predict(self, args: tuple[Tensor, ...], target_shape: torch.Size) -> Tensor:
        out = self.module(*args)
        return out.reshape(target_shape)

    def loss(self, inputs: Tensor | tuple[Tensor, ...], targets: Tensor) -> float:
        """Full-batch mean squared error (V1), without gradient."""
        args = inputs if isinstance(inputs, tuple) else (inputs,)
        with torch.no_grad():
            return float(((self._predict(args, targets.shape) - targets) ** 2).mean())

    def fit(self, inputs: Tensor | tuple[Tensor, ...], targets: Tensor) -> ValueFitInfo:
        """Run ``settings.epochs`` passes of minibatch Adam on (V1).

        Parameters
        ----------
        inputs : torch.Tensor or tuple of torch.Tensor
            Batch along dim 0 (size B_total).
        targets : torch.Tensor
            R, shape [B_total].

        Returns
        -------
        ValueFitInfo
        """
        args = inputs if isinstance(inputs, tuple) else (inputs,)
        n = targets.shape[0]
        if any(a.shape[0] != n for a in args):
            raise ValueError("inputs and targets must have the same number of samples")
        targets = targets.detach()
        before = self.loss(args, targets)
        bs = min(self.settings.minibatch_size, n)
        n_updates = 0
        params = [p for p in self.module.parameters() if p.requires_grad]
        for _ in range(self.settings.epochs):
            perm = torch.from_numpy(self._rng.permutation(n))
            for start in range(0, n, bs):
                idx = perm[start : start + bs]
                batch = tuple(a[idx] for a in args)
                tgt = targets[idx]
                # (V1)
                loss = ((self._predict(batch, tgt.shape) - tgt) ** 2).mean()
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.settings.max_grad_norm is not None:
                    nn.utils.clip_grad_norm_(params, self.settings.max_grad_norm)
                self.optimizer.step()
                n_updates += 1
        return ValueFitInfo(before, self.loss(args, targets), n_updates)


def fit_stacked(
    fitters: Sequence[ValueFitter],
    inputs: Sequence[Tensor | tuple[Tensor, ...]],
    targets: Sequence[Tensor],
) -> list[ValueFitInfo]:
    """``[f.fit(x, y) for f, x, y in zip(fitters, inputs, targets)]``, run as stacked computations.

    K independent regressions (V1) of networks with one architecture, for example one value network per agent, cost
    K times the per-step overhead of many small Adam steps when run one after the other (and do not speed up in
    threads, which hold the GIL for most of a small step). Here the K parameter sets and Adam moments are stacked
    along a new leading axis, the K minibatch losses are evaluated at once (batched matrix products when the network
    is a chain of ``nn.Linear`` and elementwise activations, ``torch.func.vmap`` otherwise), and one Adam step
    updates all K. Member k still draws its minibatch permutations from its own generator, in the order its own
    ``fit`` would, and writes its parameters and Adam moments back into its own module and optimizer.

    The stacked loss sum_k loss_k(phi_k) has gradient blocks d loss_k / d phi_k only, and Adam is elementwise, so
    member k's result equals its own ``fit`` (up to the summation order of batched matrix products) and does not
    depend on any other member's data: changing member j's inputs leaves member k's result bit-for-bit unchanged
    (tests check both).

    Members are stacked in groups that agree on module type, parameter shapes, input shapes, sample count, settings,
    optimizer hyperparameters and Adam step count (a team of two roles with different observation sizes gives two
    groups). A member with no partner, a module with buffers, gradient clipping or AMSGrad runs its own ``fit``.
    """
    if not (len(fitters) == len(inputs) == len(targets)):
        raise ValueError(f"fitters, inputs and targets must have equal lengths, got "
                         f"{len(fitters)}, {len(inputs)}, {len(targets)}")
    args = [x if isinstance(x, tuple) else (x,) for x in inputs]
    for a, y in zip(args, targets):
        if any(t.shape[0] != y.shape[0] for t in a):
            raise ValueError("inputs and targets must have the same number of samples")
    groups: dict = {}
    for k, (f, a, y) in enumerate(zip(fitters, args, targets)):
        key = _stack_signature(f, a, y)
        groups.setdefault(key if key is not None else ("alone", k), []).append(k)
    out: list[ValueFitInfo | None] = [None] * len(fitters)
    for members in groups.values():
        if len(members) == 1:
            (k,) = members
            out[k] = fitters[k].fit(inputs[k], targets[k])
        else:
            infos = _fit_group([fitters[k] for k in members], [args[k] for k in members],
                               [targets[k] for k in members])
            for k, info in zip(members, infos):
                out[k] = info
    return out


def _fit_group(fitters: list[ValueFitter], args: list[tuple[Tensor, ...]], targets: list[Tensor]
               ) -> list[ValueFitInfo]:
    """:func:`fit_stacked` for members that share a stack signature."""
    k_members = len(fitters)
    n = targets[0].shape[0]
    base = fitters[0].module
    names = [name for name, p in base.named_parameters() if p.requires_grad]
    members = [[p for p in f.module.parameters() if p.requires_grad] for f in fitters]
    stacked = {name: torch.stack([ps[i].detach() for ps in members]).requires_grad_(True)
               for i, name in enumerate(names)}
    stacked_args = tuple(torch.stack([a[j] for a in args]) for j in range(len(args[0])))
    stacked_targets = torch.stack([y.detach() for y in targets])

    chain = _linear_chain(base, args[0])
    if chain is not None:
        # A chain of Linear layers and elementwise activations: batched matrix products, no vmap machinery.
        def batched(params: dict, x: Tensor) -> Tensor:
            for layer in chain:
                if layer[0] == "linear":
                    wt = params[layer[1]].transpose(1, 2)
                    x = torch.bmm(x, wt) if layer[2] is None else torch.baddbmm(params[layer[2]].unsqueeze(1), x, wt)
                else:
                    x = layer[1](x)
            return x
    else:
        def one(params: dict, *xs: Tensor) -> Tensor:
            return torch.func.functional_call(base, params, xs)

        batched = torch.func.vmap(one)

    def predict(xs: tuple[Tensor, ...], shape: torch.Size) -> Tensor:
        return batched(stacked, *xs).reshape(shape)

    def full_losses() -> list[float]:
        with torch.no_grad():
            return ((predict(stacked_args, stacked_targets.shape) - stacked_targets) ** 2).mean(1).tolist()

    group = {key: v for key, v in fitters[0].optimizer.param_groups[0].items() if key != "params"}
    optimizer = torch.optim.Adam(list(stacked.values()), **group)
    _load_stacked_moments(optimizer, fitters, members, list(stacked.values()))
    settings = fitters[0].settings
    before = full_losses()
    bs = min(settings.minibatch_size, n)
    rows = torch.arange(k_members).unsqueeze(1)
    n_updates = 0
    for _ in range(settings.epochs):
        perm = torch.stack([torch.from_numpy(f._rng.permutation(n)) for f in fitters])
        for start in range(0, n, bs):
            idx = perm[:, start : start + bs]
            tgt = stacked_targets[rows, idx]
            # (V1) for every member at once: sum_k mean_b (V_k(o_kb) - R_kb)^2
            pred = predict(tuple(x[rows, idx] for x in stacked_args), tgt.shape)
            loss = ((pred - tgt) ** 2).mean(1).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            n_updates += 1
    after = full_losses()
    with torch.no_grad():
        for i, value in enumerate(stacked.values()):
            for k, ps in enumerate(members):
                ps[i].copy_(value[k])
    _store_stacked_moments(optimizer, fitters, members, list(stacked.values()))
    return [ValueFitInfo(b, a, n_updates) for b, a in zip(before, after)]


def _linear_chain(module: nn.Module, args: tuple[Tensor, ...]) -> list[tuple] | None:
    """The module's computation as [("linear", weight name, bias name) | ("act", module)], or None.

    Recorded from one forward on a few samples (the leaf modules in call order); accepted only when each leaf is fed
    exactly the previous one's output and the module returns the last output, reshaped.
    """
    if len(args) != 1 or args[0].dim() != 2:
        return None
    probe = args[0][:4]
    recorder = Recorder(module)
    try:
        with torch.no_grad():
            out = module(probe)
    finally:
        recorder.remove()
    calls = chain_of(recorder.records)
    if calls is None or calls[0][2] is not probe:
        return None
    last = calls[-1][3]
    if last.numel() != out.numel() or not torch.equal(last.reshape(out.shape), out):
        return None  # the module does more after its last layer than a reshape
    names = {id(p): n for n, p in module.named_parameters()}
    chain: list[tuple] = []
    for kind, mod, _, _, weight, bias in calls:
        if kind == "act":
            chain.append(("act", mod))
        elif id(weight) in names and (bias is None or id(bias) in names):
            chain.append(("linear", names[id(weight)], names[id(bias)] if bias is not None else None))
        else:
            return None
    return chain


def _stack_signature(f: ValueFitter, args: tuple[Tensor, ...], y: Tensor):
    """What members must share to be stacked together, or None when this member must fit on its own."""
    opt = f.optimizer
    if f.settings.max_grad_norm is not None or len(list(f.module.buffers())) or y.dim() != 1:
        return None
    if not isinstance(opt, torch.optim.Adam) or len(opt.param_groups) != 1:
        return None
    hyper = {k: v for k, v in opt.param_groups[0].items() if k != "params"}
    if hyper.get("amsgrad"):
        return None
    steps = {_adam_step(opt, p) for p in opt.param_groups[0]["params"]}
    if len(steps) != 1:
        return None
    params = tuple((n, tuple(p.shape), p.dtype) for n, p in f.module.named_parameters() if p.requires_grad)
    try:
        key = (type(f.module), params, tuple((tuple(t.shape[1:]), t.dtype) for t in args), y.shape[0], f.settings,
               tuple(sorted(hyper.items())), steps.pop())
        hash(key)
    except TypeError:
        return None
    return key


def _adam_step(optimizer: torch.optim.Optimizer, p: Tensor) -> float:
    state = optimizer.state.get(p)
    return float(state["step"]) if state else 0.0


def _load_stacked_moments(optimizer, fitters, members, stacked: list[Tensor]) -> None:
    """Stack the members' Adam moments (all at one step count, checked by ``_stack_signature``) into ``optimizer``."""
    for i, sp in enumerate(stacked):
        states = [f.optimizer.state.get(ps[i]) for f, ps in zip(fitters, members)]
        if not states[0]:
            continue  # no step taken yet: Adam initialises the state itself
        optimizer.state[sp] = {
            "step": states[0]["step"].clone(),
            "exp_avg": torch.stack([s["exp_avg"] for s in states]),
            "exp_avg_sq": torch.stack([s["exp_avg_sq"] for s in states]),
        }


def _store_stacked_moments(optimizer, fitters, members, stacked: list[Tensor]) -> None:
    for i, sp in enumerate(stacked):
        state = optimizer.state.get(sp)
        if not state:
            continue
        for k, (f, ps) in enumerate(zip(fitters, members)):
            f.optimizer.state[ps[i]] = {
                "step": state["step"].clone(),
                "exp_avg": state["exp_avg"][k].clone(),
                "exp_avg_sq": state["exp_avg_sq"][k].clone(),
            }
