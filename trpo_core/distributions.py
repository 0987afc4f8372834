"""Action distributions of the policies, with exact KL, entropy and the Fisher in output space.

Each distribution is built from the tensors a policy network outputs (its *output parameters* z: logits, or mean and
log-std). Besides sampling, log-probabilities, entropy and the exact KL, each one provides ``fisher_vp``, the product
with the per-sample Hessian of z' -> KL(pi_z || pi_z') at z' = z, which the Gauss-Newton Fisher-vector product
J^T F_z J v needs (:mod:`trpo_core.fisher`).

Symbols
-------
z         output parameters (logits; or mean mu and log-std s)       [..., n_actions] / [..., d]
p         softmax(z), the action probabilities                      [..., n_actions]
F_z       per-sample Fisher in output space, = Hessian of the KL   operator on z
n_heads   independent categorical heads of a joint action          MATRPO's N

Equations
---------
(D1) categorical:    KL(p || q) = sum_a p_a (log p_a - log q_a),  H(p) = -sum_a p_a log p_a
(D2) categorical:    F_z u = p * u - p (p . u)           (= (diag p - p p^T) u, the softmax Fisher)
(D3) multi-head:     pi(a | o) = prod_n pi(a^n | o), so KL, entropy and log-prob are sums over heads
(D4) diag Gaussian:  KL = sum_j [ s'_j - s_j + (e^{2 s_j} + (mu_j - mu'_j)^2) / (2 e^{2 s'_j}) - 1/2 ]
                     H = sum_j [ s_j + (1 + log 2 pi) / 2 ]
(D5) diag Gaussian:  F_z (u_mu, u_s) = (u_mu / sigma^2, 2 u_s)

References
----------
Schulman et al., "Trust Region Policy Optimization", ICML 2015, Appendix C (Fisher from the KL Hessian).
Martens, "New insights and perspectives on the natural gradient method", JMLR 2020, §9 (Gauss-Newton = Fisher for
exponential families in their natural parameters, the logits here).
Li & He, MATRPO (matrpo-reference-code.md §1.2): ``logp_n`` returns per-head log-probs of shape [N, batch].

Departures
----------
KL is the exact KL, not HARL's "k3" approximation summed over all actions (marl-reference.md §1.4), whose Hessian is
not the Fisher.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor

__all__ = ["Distribution", "Categorical", "MultiCategorical", "DiagGaussian", "MultiDiagGaussian", "kl_divergence"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class Distribution(ABC):
    """A batch of action distributions parameterised by network outputs ``params``.

    ``log_prob``, ``entropy`` and ``kl`` return one value per sample (shape = batch shape).
    """

    @property
    @abstractmethod
    def params(self) -> tuple[Tensor, ...]:
        """Output parameters z, each shaped batch shape + event shape, in the autograd graph of the network."""

    @abstractmethod
    def log_prob(self, actions: Tensor) -> Tensor:
        """log pi(a | o), shape = batch shape."""

    @abstractmethod
    def entropy(self) -> Tensor:
        """H(pi(. | o)), shape = batch shape."""

    @abstractmethod
    def kl(self, other: "Distribution") -> Tensor:
        """KL(self || other), shape = batch shape."""

    @abstractmethod
    def fisher_vp(self, tangents: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """Per-sample F_z u: the Hessian of z' -> KL(self || pi_z') at z' = self.params, applied to ``tangents``."""

    @abstractmethod
    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """Draw one action per sample."""

    @abstractmethod
    def mode(self) -> Tensor:
        """The most likely action per sample."""

    @abstractmethod
    def detach(self) -> "Distribution":
        """The same distribution with parameters cut from the graph (pi_old)."""


def _log_softmax(logits: Tensor) -> Tensor:
    """log softmax over the last axis, z - max z - log sum exp(z - max z).

    Equal to ``torch.log_softmax`` to rounding, but on CPU about 6x faster for the short action axes of MPE
    (5 actions; torch's kernel is tuned for long rows), which dominates a MATRPO line search.
    """
    shifted = logits - logits.detach().amax(-1, keepdim=True)
    return shifted - shifted.exp().sum(-1, keepdim=True).log()


class Categorical(Distribution):
    """Categorical distribution over ``n_actions`` from unnormalised logits, eqs. (D1)-(D2).

    Parameters
    ----------
    logits : torch.Tensor
        Shape [..., n_actions], float.

    Example
    -------
    >>> d = Categorical(torch.zeros(4, 3))
    >>> d.log_prob(torch.tensor([0, 1, 2, 0])).shape
    torch.Size([4])
    """

    def __init__(self, logits: Tensor) -> None:
        if logits.dim() < 1:
            raise ValueError("logits must have at least one dimension (n_actions)")
        self.logits = logits
        self.log_probs = _log_softmax(logits)

    @property
    def params(self) -> tuple[Tensor, ...]:
        return (self.logits,)

    @property
    def probs(self) -> Tensor:
        """p = softmax(z), shape [..., n_actions]."""
        return self.log_probs.exp()

    def log_prob(self, actions: Tensor) -> Tensor:
        return self.log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self) -> Tensor:
        # (D1)
        return -(self.probs * self.log_probs).sum(-1)

    def kl(self, other: Distribution) -> Tensor:
        if not isinstance(other, Categorical):
            raise TypeError(f"KL between Categorical and {type(other).__name__} is not defined")
        # (D1)
        return (self.probs * (self.log_probs - other.log_probs)).sum(-1)

    def fisher_vp(self, tangents: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        (u,) = tangents
        p = self.probs.detach()
        pu = p * u
        # (D2)
        return (pu - p * pu.sum(-1, keepdim=True),)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        p = self.probs.detach()
        flat = p.reshape(-1, p.shape[-1])
        return torch.multinomial(flat, 1, generator=generator).view(p.shape[:-1])

    def sample_gumbel(self, uniform: Tensor) -> Tensor:
        """Draw one action per sample by Gumbel-max from given uniform noise: argmax_a z_a - log(-log u_a).

        ``uniform`` has the shape of the logits, values in [0, 1). Two distributions handed the same noise take the
        same action wherever their logits agree; that is how agents share one sampling noise stream (Gumbel-max is
        the sampler of the original MATRPO code, ``CategoricalPd.sample``).
        """
        if uniform.shape != self.logits.shape:
            raise ValueError(
                f"uniform must have the logits' shape {tuple(self.logits.shape)}, got {tuple(uniform.shape)}"
            )
        # u = 0 would give -log(-log 0) = -inf (the action is never drawn); clamping keeps the arithmetic finite.
        u = uniform.clamp(min=torch.finfo(uniform.dtype).tiny)
        return (self.logits.detach() - torch.log(-torch.log(u))).argmax(-1)

    def mode(self) -> Tensor:
        return self.logits.argmax(-1)

    def detach(self) -> "Categorical":
        return type(self)(self.logits.detach())


class _IndependentHeads:
    """Independent heads along the parameters' axis -2, eq. (D3): the base distribution's per-head log-probs,
    entropies and KLs are summed over heads; ``log_prob_per_head`` keeps them apart, head axis first."""

    @property
    def n_heads(self) -> int:
        return self.params[0].shape[-2]

    def log_prob_per_head(self, actions: Tensor) -> Tensor:
        """log pi(a^n | o) for each head n, shape [n_heads, ...]."""
        return super().log_prob(actions).movedim(-1, 0)

    def log_prob(self, actions: Tensor) -> Tensor:
        # (D3)
        return super().log_prob(actions).sum(-1)

    def entropy(self) -> Tensor:
        return super().entropy().sum(-1)

    def kl(self, other: Distribution) -> Tensor:
        if not isinstance(other, type(self)):
            raise TypeError(f"KL between {type(self).__name__} and {type(other).__name__} is not defined")
        return super().kl(other).sum(-1)


class MultiCategorical(_IndependentHeads, Categorical):
    """Independent categorical heads, pi(a | o) = prod_n pi(a^n | o), eq. (D3).

    Parameters
    ----------
    logits : torch.Tensor
        Shape [..., n_heads, n_actions]; MATRPO's policy gives [batch, N, 5].

    Notes
    -----
    ``log_prob``, ``entropy`` and ``kl`` sum over heads (shape = batch shape); ``log_prob_per_head`` keeps them apart
    with the head axis first, [n_heads, ...], as MATRPO's ``logp_n`` (actions [..., n_heads]).

    Example
    -------
    >>> d = MultiCategorical(torch.zeros(4, 3, 5))
    >>> d.log_prob_per_head(torch.zeros(4, 3, dtype=torch.long)).shape
    torch.Size([3, 4])
    """

    def __init__(self, logits: Tensor) -> None:
        if logits.dim() < 2:
            raise ValueError("logits must have shape [..., n_heads, n_actions]")
        super().__init__(logits)


class DiagGaussian(Distribution):
    """Diagonal Gaussian N(mu, diag(sigma^2)) with sigma = exp(log_std), eqs. (D4)-(D5).

    Parameters
    ----------
    mean : torch.Tensor
        Shape [..., d].
    log_std : torch.Tensor
        Broadcastable to ``mean`` (a state-independent parameter of shape [d] is typical). It is expanded to the
        mean's shape inside the graph, so gradients reach the shared parameter summed over the batch.

    Example
    -------
    >>> d = DiagGaussian(torch.zeros(4, 2), torch.zeros(2))
    >>> d.entropy().shape
    torch.Size([4])
    """

    def __init__(self, mean: Tensor, log_std: Tensor) -> None:
        self.mean = mean
        self.log_std = log_std.expand_as(mean)

    @property
    def params(self) -> tuple[Tensor, ...]:
        return (self.mean, self.log_std)

    @property
    def std(self) -> Tensor:
        return self.log_std.exp()

    def log_prob(self, actions: Tensor) -> Tensor:
        z = (actions - self.mean) * torch.exp(-self.log_std)
        return (-0.5 * z * z - self.log_std - _HALF_LOG_2PI).sum(-1)

    def entropy(self) -> Tensor:
        # (D4)
        return (self.log_std + 0.5 + _HALF_LOG_2PI).sum(-1)

    def kl(self, other: Distribution) -> Tensor:
        if not isinstance(other, DiagGaussian):
            raise TypeError(f"KL between DiagGaussian and {type(other).__name__} is not defined")
        # (D4)
        var_ratio = torch.exp(2.0 * (self.log_std - other.log_std))
        diff = (self.mean - other.mean) * torch.exp(-other.log_std)
        return (other.log_std - self.log_std + 0.5 * (var_ratio + diff * diff) - 0.5).sum(-1)

    def fisher_vp(self, tangents: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        u_mean, u_log_std = tangents
        # (D5)
        return (u_mean * torch.exp(-2.0 * self.log_std.detach()), 2.0 * u_log_std)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype, device=self.mean.device)
        return (self.mean + self.std * noise).detach()

    def mode(self) -> Tensor:
        return self.mean

    def detach(self) -> "DiagGaussian":
        return DiagGaussian(self.mean.detach(), self.log_std.detach())


class MultiDiagGaussian(_IndependentHeads, DiagGaussian):
    """Independent diagonal Gaussian heads, pi(a | o) = prod_n N(a^n; mu_n, diag sigma_n^2), eqs. (D3)-(D5).

    Parameters
    ----------
    mean : torch.Tensor
        Shape [..., n_heads, d].
    log_std : torch.Tensor
        Broadcastable to ``mean`` (e.g. a state-independent [n_heads, d] parameter).

    Notes
    -----
    As :class:`MultiCategorical`: ``log_prob``, ``entropy`` and ``kl`` sum over heads and action dimensions (shape =
    batch shape); ``log_prob_per_head`` sums over the action dimensions only, head axis first, [n_heads, ...]
    (actions [..., n_heads, d]).

    Example
    -------
    >>> d = MultiDiagGaussian(torch.zeros(4, 3, 2), torch.zeros(3, 2))
    >>> d.log_prob_per_head(torch.zeros(4, 3, 2)).shape
    torch.Size([3, 4])
    """

    def __init__(self, mean: Tensor, log_std: Tensor) -> None:
        if mean.dim() < 2:
            raise ValueError("mean must have shape [..., n_heads, d]")
        super().__init__(mean, log_std)

    def detach(self) -> "MultiDiagGaussian":
        return MultiDiagGaussian(self.mean.detach(), self.log_std.detach())


def kl_divergence(p: Distribution, q: Distribution) -> Tensor:
    """Return KL(p || q) per sample, eqs. (D1), (D3), (D4).

    Example
    -------
    >>> float(kl_divergence(Categorical(torch.zeros(3)), Categorical(torch.zeros(3))))
    0.0
    """
    return p.kl(q)
