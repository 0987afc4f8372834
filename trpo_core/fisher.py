"""Fisher-vector products F v of the mean KL between the old and the new policy, at theta_old.

Problem: TRPO's natural-gradient system (F + lambda I) s = g needs v -> F v, where F is the Hessian at theta_old of
the mean KL over a batch of M inputs o_m,

    KLbar(theta) = (1/M) sum_m KL(pi_old(. | o_m) || pi_theta(. | o_m)).

Two forms are provided, both built **once per update** (the graph at theta_old is kept and reused by every CG
iteration):

- ``"exact"``: double backward, F v = grad_theta(grad_theta KLbar . v) (Schulman et al. 2015, Appendix C; HARL and
  MATRPO compute it this way).
- ``"fast"``: Gauss-Newton, F v = (1/M) J^T F_z J v, with J = d z / d theta the Jacobian of the distribution's
  output parameters z (logits; mean and log-std) and F_z the analytic per-sample Fisher in output space
  (:meth:`Distribution.fisher_vp`). At theta_old the KL's gradient in z vanishes, so the second-order term of the
  Hessian drops out and the two forms are **equal**, not merely close (Martens 2020, §9).

Symbols
-------
theta   flat trainable parameters of the policy                 [P]
z_m     output parameters for input o_m (logits, mean, log-std) [M, ...]
J       d z / d theta                                           [M*dim z, P]
F_z     per-sample Fisher in output space (D2, D5)              block diagonal
lambda  damping                                                 scalar
k       subsampling stride (every k-th input)                   int

Equations
---------
(F1) exact:  F v = d/d theta [ (d KLbar / d theta)^T v ]
(F2) fast:   u = J v           (backward of the retained vector-Jacobian graph w.r.t. its cotangent: "double vjp")
(F3) fast:   w = (1/M) F_z u   (analytic, per sample)
(F4) fast:   F v = J^T w       (backward of the retained forward graph)
(F5) both:   return F v + lambda v

When the module's layers run as a chain of ``nn.Linear`` and elementwise activations (an ``nn.Sequential``, or a
trunk followed by a head layer), (F2) and (F4) are done by hand from activations cached at build time, with a_l the
input of the l-th Linear, W_l its weight and D_l the derivative of the activation after it:

(F2') t_l = (D_{l-1} * t_{l-1}) W_l^T + a_l V_l^T + v_{b_l},  J v = tail(t_L)    two matmuls per layer, no forward
(F4') G_l = g_l^T a_l,  g_{b_l} = sum_m g_l,  g_{l-1} = D_{l-1} * (g_l W_l)     two matmuls per layer

where only the small tail from the last layer to z (views, head slicing, a log-std parameter) runs on autograd.
The activations recognised are torch's elementwise ones and any parameter-free module with a class attribute
``elementwise = True`` (for example a custom fused activation). Other modules (residual connections, shared layers,
normalisation layers) use autograd throughout.
``FisherVectorProduct.path`` says which one was taken.

References
----------
Schulman et al., "Trust Region Policy Optimization", ICML 2015, Appendix C.
Martens, "New insights and perspectives on the natural gradient method", JMLR 21 (2020), §9.
Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation 1994 (J v by reverse-over-reverse).

Departures
----------
- The graph is built on a detached *snapshot* of the parameters (``torch.func.functional_call``), so the operator
  stays valid while the module's parameters change in a line search, and can be reused for every step taken from the
  same theta_old (MATRPO's ADMM iterations all restart from theta_old).
- Subsampling takes every k-th input ``inputs[::k]`` (MATRPO's ``obs[::5]``); M is then the subsample size.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ._mlp import Recorder, chain_of
from .distributions import Distribution
from .params import unflatten

__all__ = [
    "FisherVectorProduct",
    "fisher_vector_product",
    "functional_fisher_vector_product",
    "subsample",
]

Inputs = Tensor | tuple[Tensor, ...]


def subsample(inputs: Inputs, every: int) -> Inputs:
    """Return every ``every``-th sample (along dim 0) of a tensor or of each tensor in a tuple.

    Example
    -------
    >>> subsample(torch.arange(10), 5)
    tensor([0, 5])
    """
    if every < 1:
        raise ValueError(f"every must be an integer >= 1, got {every!r}")
    if every == 1:
        return inputs
    if isinstance(inputs, tuple):
        return tuple(t[::every] for t in inputs)
    return inputs[::every]


class _Call(nn.Module):
    """Lets ``functional_call`` swap the parameters of ``module`` while an arbitrary closure runs."""

    def __init__(self, module: nn.Module, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.module = module
        self._fn = fn

    def forward(self, *args: Any) -> Any:
        return self._fn(*args)


def _is_view_of(z: Tensor, y: Tensor) -> bool:
    """Whether ``z`` is a same-size, row-major reshape of ``y`` (so J_tail is the identity on the flat buffer)."""
    fn = z.grad_fn
    return (
        z is not y
        and z._base is y
        and z.numel() == y.numel()
        and z.is_contiguous()
        and y.is_contiguous()
        and z.storage_offset() == y.storage_offset()
        and type(fn).__name__ in ("ViewBackward0", "ReshapeAliasBackward0", "UnsafeViewBackward0")
        and fn.next_functions[0][0] is y.grad_fn
    )


def _reaches(outputs: list[Tensor], stop: Any, forbidden: set[int]) -> bool:
    """Whether the graph of ``outputs``, not descending through node ``stop``, reaches a leaf in ``forbidden``."""
    stack = [z.grad_fn for z in outputs]
    seen: set[int] = set()
    while stack:
        fn = stack.pop()
        if fn is None or fn is stop or id(fn) in seen:
            continue
        seen.add(id(fn))
        var = getattr(fn, "variable", None)
        if var is not None and id(var) in forbidden:
            return True
        stack.extend(nxt for nxt, _ in fn.next_functions)
    return False


class _Chain:
    """Fast path of (F2)-(F4) for modules whose layers form a chain Linear -> activation -> Linear -> ... -> y.

    With a_l the input of the l-th Linear (cached), W_l its weight, D_l = act'(pre-activation) (cached):

    (F2') forward tangent  t_l = (D_{l-1} * t_{l-1}) W_l^T + a_l V_l^T + v_{b_l},   J_y v = t_L
    (F4') backward         G_l = g_l^T a_l,  g_{b_l} = sum_m g_l,  g_{l-1} = D_{l-1} * (g_l W_l)

    The (small) tail from y to the distribution's output parameters z (views, head slicing, a state-independent
    log-std parameter) stays on autograd: its J v by reverse-over-reverse and its J^T w by a retained graph.
    """

    @classmethod
    def build(cls, records: list, dist: Distribution, theta: list[Tensor]) -> "_Chain | None":
        calls = chain_of(records)
        if calls is None or calls[0][2].requires_grad:
            return None  # not a chain, or the chain's input depends on parameters: use autograd
        index = {id(t): i for i, t in enumerate(theta)}
        layers: list[tuple] = []
        for kind, mod, x, out, weight, bias in calls:
            if kind == "linear":
                iw = index.get(id(weight))
                ib = index.get(id(bias)) if bias is not None else None
                layers.append(("linear", x.detach(), weight.detach(), iw, ib))
            elif isinstance(mod, nn.Identity):
                layers.append(("act", None))
            else:
                pre = x.detach().requires_grad_(True)
                with torch.enable_grad():
                    act = mod(pre)
                    (d,) = torch.autograd.grad(act, pre, torch.ones_like(act))
                layers.append(("act", d))
        y = calls[-1][3]
        chain_idx = {i for layer in layers if layer[0] == "linear" for i in layer[3:5] if i is not None}
        if not chain_idx or not y.requires_grad:
            return None
        outs_all = list(dist.params)
        used = [i for i, z in enumerate(outs_all) if z.requires_grad]
        outs = [outs_all[i] for i in used]
        if _reaches(outs, y.grad_fn, {id(theta[i]) for i in chain_idx}):
            return None  # the distribution uses the chain's parameters other than through y
        others = [i for i in range(len(theta)) if i not in chain_idx]
        self = cls()
        self.layers, self.y, self.theta, self.others = layers, y, theta, others
        self._local = threading.local()
        # The common tail is a reshape of y (e.g. logits [B, heads * actions] -> [B, heads, actions]): then J_tail is
        # the identity on the flat buffer and both tail products are views, with no autograd call per product.
        self.view_tail = not others and len(outs) == 1 and _is_view_of(outs[0], y)
        if self.view_tail:
            self.outs_all, self.used, self.outs = outs_all, used, outs
            return self
        tail_inputs = [y] + [theta[i] for i in others]
        u = [torch.zeros_like(z, requires_grad=True) for z in outs]
        gt = torch.autograd.grad(outs, tail_inputs, grad_outputs=u, create_graph=True, allow_unused=True)
        if gt[0] is None or not gt[0].requires_grad:
            return None
        self.outs_all, self.used, self.outs, self.u, self.tail_inputs = outs_all, used, outs, u, tail_inputs
        # J_tail^T u for the inputs that depend on u; their tangents are t_y (k = 0) and v_others (k >= 1).
        self.gt = [(k, g) for k, g in enumerate(gt) if g is not None and g.requires_grad]
        return self

    def fvp(self, v: Tensor, old: Distribution, scale: float) -> Tensor:
        parts = unflatten(v, self.theta)
        # (F2') tangent of y. Every intermediate is a fresh tensor owned here, so the activation factors are applied
        # in place (same operations and rounding as out of place, without a new [M, width] buffer per layer).
        t = None
        for layer in self.layers:
            if layer[0] == "linear":
                _, x, w, iw, ib = layer
                new = t @ w.t() if t is not None else None
                if iw is not None:
                    new = x @ parts[iw].t() if new is None else new.addmm_(x, parts[iw].t())
                if ib is not None:
                    new = parts[ib].expand(x.shape[0], -1) if new is None else new.add_(parts[ib])
                t = new
            elif t is not None and layer[1] is not None:
                t = t * layer[1] if t._base is not None or not t.is_contiguous() else t.mul_(layer[1])
        if t is None:
            t = torch.zeros_like(self.y)
        if self.view_tail:
            (i,) = self.used
            tangents = [t.view(z.shape) if k == i else torch.zeros_like(z) for k, z in enumerate(self.outs_all)]
        else:
            tangents = [torch.zeros_like(z) for z in self.outs_all]
            tangents_in = [t] + [parts[i] for i in self.others]
            # (F2) through the tail
            jz = torch.autograd.grad([g for _, g in self.gt], self.u,
                                     grad_outputs=[tangents_in[k] for k, _ in self.gt],
                                     retain_graph=True, allow_unused=True, materialize_grads=True)
            for k, i in enumerate(self.used):
                tangents[i] = jz[k]
        # (F3)
        fz = old.fisher_vp(tuple(tangents))
        return self.vjp([fz[i] * scale for i in self.used])

    def vjp(self, w_out: list[Tensor]) -> Tensor:
        """(F4) J^T w for cotangents ``w_out`` on the used distribution parameters, as a flat [P] vector."""
        if self.view_tail:
            return self._backward(w_out[0].reshape(self.y.shape), [None] * len(self.theta))
        # through the tail
        back = torch.autograd.grad(self.outs, self.tail_inputs, grad_outputs=w_out, retain_graph=True,
                                   allow_unused=True, materialize_grads=True)
        grads: list[Tensor | None] = [None] * len(self.theta)
        for k, i in enumerate(self.others):
            grads[i] = back[k + 1]
        return self._backward(back[0], grads)

    def _buffer(self, key: int, rows: int, cols: int, dtype: torch.dtype) -> Tensor:
        """A reusable [rows, cols] work buffer of this thread (a fresh [10,000 x 128] result per call was slower)."""
        cache = self._local.__dict__.setdefault("buffers", {})
        buf = cache.get(key)
        if buf is None or buf.shape != (rows, cols) or buf.dtype != dtype:
            buf = cache[key] = torch.empty(rows, cols, dtype=dtype)
        return buf

    def _backward(self, g: Tensor, grads: list) -> Tensor:
        """(F4') through the chain, from g = J_tail^T w at y; ``grads`` already holds the non-chain parameters'.

        The activation factors are applied in place once g is a buffer made here (from the first product g W on;
        the caller's cotangent is never written), and g W goes into this thread's reused work buffer. Same
        operations on equally aligned memory, so the same rounding as the plain out-of-place form (tested bit for
        bit; MKL's rounding can depend on alignment, so the gradients are not written into unaligned slices of one
        flat vector but concatenated).
        """
        owned = False
        for pos in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[pos]
            if layer[0] == "linear":
                _, x, w, iw, ib = layer
                if iw is not None:
                    grads[iw] = g.t() @ x
                if ib is not None:
                    grads[ib] = g.sum(0)
                if pos > 0:
                    g = torch.mm(g, w, out=self._buffer(pos, g.shape[0], w.shape[1], g.dtype))
                    owned = True
            elif layer[1] is not None:
                g = g.mul_(layer[1]) if owned else g * layer[1]
                owned = True
        return torch.cat([(gr if gr is not None else torch.zeros_like(p)).reshape(-1)
                          for gr, p in zip(grads, self.theta)])


class FisherVectorProduct:
    """The operator v -> (F + damping I) v at theta_old, eqs. (F1)-(F5). Build it with :func:`fisher_vector_product`.

    Attributes
    ----------
    form : str
        ``"fast"`` or ``"exact"``.
    damping : float
        lambda in (F5).
    n_samples : int
        M, the number of per-sample KL terms averaged (after subsampling).
    dim : int
        P, the length of v.
    distribution : Distribution
        pi_old on the (subsampled) inputs, detached: the forward pass the operator was built from, for callers that
        also need the old policy's outputs.
    path : str
        How the fast form runs: ``"mlp"`` (the module's layers form a chain of ``nn.Linear`` and elementwise
        activations, so J v and J^T w are computed by hand from the cached activations, eqs. (F2'), (F4')) or
        ``"autograd"`` (any other module: reverse-over-reverse J v and a retained-graph J^T w). Always
        ``"autograd"`` for the exact form.
    """

    def __init__(
        self,
        module: nn.Module,
        dist_fn: Callable[..., Distribution],
        inputs: Inputs,
        *,
        form: Literal["fast", "exact"],
        damping: float,
        subsample_every: int,
    ) -> None:
        if form not in ("fast", "exact"):
            raise ValueError(f"form must be one of 'fast', 'exact', got {form!r}")
        if not (damping >= 0):
            raise ValueError(f"damping must be >= 0, got {damping!r}")
        self.form = form
        self.damping = float(damping)
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        # Snapshot of theta_old: the graph below refers to these leaves, not to the module's parameters.
        self._theta = [p.detach().clone().requires_grad_(True) for _, p in named]
        self.dim = sum(t.numel() for t in self._theta)
        sub = subsample(inputs, subsample_every)
        args = sub if isinstance(sub, tuple) else (sub,)
        wrapper = _Call(module, dist_fn)
        mapping = {"module." + n: t for (n, _), t in zip(named, self._theta)}
        recorder = Recorder(module) if form == "fast" else None
        try:
            dist = functional_call(wrapper, mapping, args)
        finally:
            if recorder is not None:
                recorder.remove()
        if not isinstance(dist, Distribution):
            raise TypeError(f"dist_fn must return a trpo_core Distribution, got {type(dist).__name__}")
        self._old = dist.detach()
        self.distribution = self._old
        self._params = [z for z in dist.params if z.requires_grad]
        self._params_used = [i for i, z in enumerate(dist.params) if z.requires_grad]
        self.n_samples = int(self._old.entropy().numel())
        self._chain: _Chain | None = None
        if form == "exact":
            self._build_exact(dist)
            self.path = "autograd"
        else:
            self._chain = _Chain.build(recorder.records, dist, self._theta) if recorder is not None else None
            if self._chain is None:
                self._build_fast(dist)
            self.path = "autograd" if self._chain is None else "mlp"

    # ---- exact form (F1) ----------------------------------------------------------------------------------------
    def _build_exact(self, dist: Distribution) -> None:
        kl = self._old.kl(dist).mean()
        grads = torch.autograd.grad(kl, self._theta, create_graph=True, allow_unused=True)
        self._kl_grads = [(i, g) for i, g in enumerate(grads) if g is not None and g.requires_grad]

    def _exact(self, v: Tensor) -> Tensor:
        if not self._kl_grads:
            return torch.zeros_like(v)
        parts = unflatten(v, self._theta)
        gv = sum((g * parts[i]).sum() for i, g in self._kl_grads)
        # (F1)
        hv = torch.autograd.grad(gv, self._theta, retain_graph=True, allow_unused=True, materialize_grads=True)
        return torch.cat([h.reshape(-1) for h in hv])

    # ---- fast Gauss-Newton form (F2)-(F4) -------------------------------------------------------------------------
    def _build_fast(self, dist: Distribution) -> None:
        outs = list(dist.params)
        self._out_used = [i for i, z in enumerate(outs) if z.requires_grad]
        self._outs = [outs[i] for i in self._out_used]
        self._out_like = outs
        if not self._outs:
            self._jt_u = []
            return
        # J^T u as a differentiable function of a dummy cotangent u: differentiating it w.r.t. u along v gives J v
        # without a second forward pass (Pearlmutter's reverse-over-reverse trick).
        self._u = [torch.zeros_like(z, requires_grad=True) for z in self._outs]
        jt_u = torch.autograd.grad(self._outs, self._theta, grad_outputs=self._u, create_graph=True, allow_unused=True)
        self._jt_u = [(i, g) for i, g in enumerate(jt_u) if g is not None and g.requires_grad]

    def _fast(self, v: Tensor) -> Tensor:
        if not self._jt_u:
            return torch.zeros_like(v)
        parts = unflatten(v, self._theta)
        # (F2)
        jv = torch.autograd.grad(
            [g for _, g in self._jt_u],
            self._u,
            grad_outputs=[parts[i] for i, _ in self._jt_u],
            retain_graph=True,
            allow_unused=True,
            materialize_grads=True,
        )
        tangents = [torch.zeros_like(z) for z in self._out_like]
        for k, i in enumerate(self._out_used):
            tangents[i] = jv[k]
        # (F3)
        fz = self._old.fisher_vp(tuple(tangents))
        scale = 1.0 / self.n_samples
        w = [fz[i] * scale for i in self._out_used]
        # (F4)
        jtw = torch.autograd.grad(self._outs, self._theta, grad_outputs=w, retain_graph=True, allow_unused=True,
                                  materialize_grads=True)
        return torch.cat([h.reshape(-1) for h in jtw])

    def vjp(self, cotangents: tuple[Tensor, ...]) -> Tensor:
        """Return J^T w, summed over the (subsampled) samples: the gradient of sum(w * z) with respect to theta_old.

        ``cotangents`` has one tensor per distribution parameter z (shaped like ``dist.params``; e.g. the logits'
        gradient of a per-sample objective). On the ``"mlp"`` path this is eq. (F4') on the cached activations, with
        no autograd graph; otherwise a retained-graph backward. Many right-hand sides at one theta_old (MATRPO's
        ADMM iterations) reuse one build.
        """
        if len(cotangents) != len(self._old.params):
            raise ValueError(f"expected {len(self._old.params)} cotangents (one per distribution parameter), "
                             f"got {len(cotangents)}")
        w = [cotangents[i] for i in self._params_used]
        with torch.enable_grad():
            if self._chain is not None:
                out = self._chain.vjp(w)
            elif self._params:
                grads = torch.autograd.grad(self._params, self._theta, grad_outputs=w, retain_graph=True,
                                            allow_unused=True, materialize_grads=True)
                out = torch.cat([g.reshape(-1) for g in grads])
            else:
                out = torch.zeros(self.dim, dtype=self._theta[0].dtype)
        return out.detach()

    def __call__(self, v: Tensor) -> Tensor:
        """Return (F + damping I) v, eq. (F5). ``v`` has shape [P] and the parameters' dtype."""
        if v.shape != (self.dim,):
            raise ValueError(f"v must have shape [{self.dim}], got {tuple(v.shape)}")
        with torch.enable_grad():
            if self.form == "exact":
                fv = self._exact(v)
            elif self._chain is not None:
                fv = self._chain.fvp(v, self._old, 1.0 / self.n_samples)
            else:
                fv = self._fast(v)
        if self.damping:
            fv = fv + self.damping * v
        return fv.detach()


def fisher_vector_product(
    module: nn.Module,
    dist_fn: Callable[..., Distribution],
    inputs: Inputs,
    *,
    form: Literal["fast", "exact"] = "fast",
    damping: float = 0.0,
    subsample_every: int = 1,
) -> FisherVectorProduct:
    """Build v -> (F + damping I) v at the module's current parameters theta_old, eqs. (F1)-(F5).

    Parameters
    ----------
    module : torch.nn.Module
        Holds theta (its parameters with ``requires_grad=True``, flattened in ``parameters()`` order).
    dist_fn : callable
        ``dist_fn(*inputs) -> Distribution``: evaluates the policy (through ``module``) on a batch. Examples:
        ``lambda obs: MultiCategorical(policy(obs))`` for logits [batch, n_heads, n_actions];
        ``lambda obs: DiagGaussian(policy(obs), policy.log_std)`` for a state-independent log-std parameter.
    inputs : torch.Tensor or tuple of torch.Tensor
        The batch, samples along dim 0; a tuple is unpacked into ``dist_fn``.
    form : {"fast", "exact"}
        Gauss-Newton J^T F_z J v (F2)-(F4) or double-backward Hessian of the mean KL (F1). They are equal at theta_old.
    damping : float
        lambda >= 0 added as lambda v (F5). ``trust_region_step`` adds ``TRPOSettings.damping`` itself, so pass an
        undamped operator (0.0) there.
    subsample_every : int
        Use inputs[::k] (MATRPO: 5).

    Returns
    -------
    FisherVectorProduct
        Callable on vectors of shape [P]. The graph at theta_old is built here, once; each call costs two backward
        passes (fast) or one second-order backward (exact), no forward pass.

    Example
    -------
    >>> net = torch.nn.Linear(4, 3)
    >>> from trpo_core.distributions import Categorical
    >>> fvp = fisher_vector_product(net, lambda o: Categorical(net(o)), torch.randn(8, 4))
    >>> fvp(torch.ones(15)).shape
    torch.Size([15])
    """
    return FisherVectorProduct(module, dist_fn, inputs, form=form, damping=damping, subsample_every=subsample_every)


def functional_fisher_vector_product(
    dist_fn: Callable[..., Distribution],
    params: dict[str, Tensor],
    inputs: Inputs,
    *,
    damping: float = 0.0,
    subsample_every: int = 1,
) -> Callable[[dict[str, Tensor]], dict[str, Tensor]]:
    """Pure ``torch.func`` Gauss-Newton Fisher-vector product on parameter dicts, eqs. (F2)-(F5).

    Composable with ``torch.func.vmap`` (e.g. over agents whose policies are stacked with
    ``torch.func.stack_module_state``), which the autograd-based :func:`fisher_vector_product` is not.

    Parameters
    ----------
    dist_fn : callable
        ``dist_fn(params, *inputs) -> Distribution``, e.g.
        ``lambda P, o: MultiCategorical(torch.func.functional_call(policy, P, (o,)))``.
    params : dict of str to torch.Tensor
        theta_old as a pytree.
    inputs : torch.Tensor or tuple of torch.Tensor
        Batch along dim 0.
    damping, subsample_every
        As in :func:`fisher_vector_product`.

    Returns
    -------
    callable
        v (a dict shaped like ``params``) -> (F + damping I) v (same structure). J^T is a ``torch.func.vjp`` closure
        built once; J v is a ``torch.func.jvp`` (one forward-mode pass per call).

    Example
    -------
    >>> net = torch.nn.Linear(4, 3)
    >>> from trpo_core.distributions import Categorical
    >>> P = {k: v.detach() for k, v in net.named_parameters()}
    >>> fvp = functional_fisher_vector_product(
    ...     lambda P, o: Categorical(torch.func.functional_call(net, P, (o,))), P, torch.randn(8, 4))
    >>> fvp({k: torch.ones_like(v) for k, v in P.items()})["weight"].shape
    torch.Size([3, 4])
    """
    sub = subsample(inputs, subsample_every)
    args = sub if isinstance(sub, tuple) else (sub,)

    def outputs(p: dict[str, Tensor]) -> tuple[Tensor, ...]:
        return tuple(dist_fn(p, *args).params)

    outs, vjp_fn = torch.func.vjp(outputs, params)
    old = dist_fn(params, *args).detach()
    n_samples = old.entropy().numel()

    def fvp(v: dict[str, Tensor]) -> dict[str, Tensor]:
        # (F2)
        _, jv = torch.func.jvp(outputs, (params,), (v,))
        # (F3)
        w = tuple(t / n_samples for t in old.fisher_vp(tuple(jv)))
        # (F4)
        (jtw,) = vjp_fn(w)
        # (F5)
        return {k: jtw[k] + damping * v[k] for k in jtw}

    return fvp
