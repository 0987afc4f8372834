"""Flat parameter vectors: a module's trainable parameters seen as one vector theta in R^P.

TRPO works on theta as a single vector: the gradient g, the natural-gradient direction s = F^{-1} g and the step
theta_old + alpha * beta * s (Schulman et al. 2015, Appendix C) are all vectors in R^P. These helpers convert between
that vector and the parameter tensors, in ``module.parameters()`` order, keeping only parameters with
``requires_grad=True`` ("trainable").

Symbols
-------
theta   flat parameters              [P]
p_i     the i-th parameter tensor    shape of the parameter, P = sum_i numel(p_i)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "trainable_parameters",
    "n_parameters",
    "flat_params",
    "set_flat_params",
    "unflatten",
    "flat_grad",
]

ParamsLike = nn.Module | Iterable[Tensor]


def trainable_parameters(params: ParamsLike) -> list[Tensor]:
    """Return the parameter tensors that make up theta.

    Parameters
    ----------
    params : torch.nn.Module or iterable of torch.Tensor
        A module (its parameters with ``requires_grad=True``, in ``parameters()`` order) or the tensors themselves.

    Returns
    -------
    list of torch.Tensor
        The tensors, in the order in which they are flattened.

    Example
    -------
    >>> len(trainable_parameters(torch.nn.Linear(3, 2)))
    2
    """
    if isinstance(params, nn.Module):
        return [p for p in params.parameters() if p.requires_grad]
    return list(params)


def n_parameters(params: ParamsLike) -> int:
    """Return P, the length of the flat parameter vector.

    Example
    -------
    >>> n_parameters(torch.nn.Linear(3, 2))
    8
    """
    return sum(p.numel() for p in trainable_parameters(params))


def flat_params(params: ParamsLike) -> Tensor:
    """Return theta = concat_i vec(p_i) as a new, detached vector.

    One copy is unavoidable (the parameters live in separate storages); the result does not alias them, so it can be
    kept as theta_old while the parameters change.

    Parameters
    ----------
    params : torch.nn.Module or iterable of torch.Tensor

    Returns
    -------
    torch.Tensor
        Shape [P], the parameters' dtype and device.

    Example
    -------
    >>> flat_params(torch.nn.Linear(3, 2)).shape
    torch.Size([8])
    """
    tensors = trainable_parameters(params)
    return torch.cat([p.detach().reshape(-1) for p in tensors])


def set_flat_params(params: ParamsLike, flat: Tensor) -> None:
    """Write theta into the parameters in place: p_i <- theta[offset_i : offset_i + numel(p_i)].

    Each parameter is filled by one ``copy_`` from a view of ``flat`` (no intermediate tensors), outside autograd.
    Copying the same vector back restores the parameters bit for bit.

    Parameters
    ----------
    params : torch.nn.Module or iterable of torch.Tensor
    flat : torch.Tensor
        Shape [P].

    Raises
    ------
    ValueError
        If ``flat`` is not a vector of length P.

    Example
    -------
    >>> lin = torch.nn.Linear(3, 2)
    >>> set_flat_params(lin, torch.zeros(8))
    >>> float(lin.weight.detach().abs().sum())
    0.0
    """
    tensors = trainable_parameters(params)
    total = sum(p.numel() for p in tensors)
    if flat.dim() != 1 or flat.numel() != total:
        raise ValueError(f"flat must have shape [{total}], got {tuple(flat.shape)}")
    offset = 0
    with torch.no_grad():
        for p in tensors:
            n = p.numel()
            p.copy_(flat[offset : offset + n].view_as(p))
            offset += n


def unflatten(flat: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """Split a flat vector into views shaped like ``like`` (no copies).

    Parameters
    ----------
    flat : torch.Tensor
        Shape [P], contiguous.
    like : sequence of torch.Tensor
        Tensors giving the shapes; P = sum of their sizes.

    Returns
    -------
    list of torch.Tensor
        Views into ``flat``.

    Example
    -------
    >>> [t.shape for t in unflatten(torch.arange(5.0), [torch.zeros(2), torch.zeros(3)])]
    [torch.Size([2]), torch.Size([3])]
    """
    total = sum(t.numel() for t in like)
    if flat.dim() != 1 or flat.numel() != total:
        raise ValueError(f"flat must have shape [{total}], got {tuple(flat.shape)}")
    out, offset = [], 0
    for t in like:
        n = t.numel()
        out.append(flat[offset : offset + n].view(t.shape))
        offset += n
    return out


def flat_grad(
    output: Tensor,
    params: ParamsLike,
    *,
    grad_outputs: Tensor | None = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
) -> Tensor:
    """Return d output / d theta as one vector, with zeros for parameters the output does not depend on.

    Parameters
    ----------
    output : torch.Tensor
        A scalar, or any tensor together with ``grad_outputs`` (then the vector-Jacobian product is returned).
    params : torch.nn.Module or iterable of torch.Tensor
    grad_outputs, retain_graph, create_graph
        As in :func:`torch.autograd.grad`.

    Returns
    -------
    torch.Tensor
        Shape [P].

    Example
    -------
    >>> lin = torch.nn.Linear(3, 1)
    >>> flat_grad(lin(torch.ones(1, 3)).sum(), lin).shape
    torch.Size([4])
    """
    tensors = trainable_parameters(params)
    grads = torch.autograd.grad(
        output,
        tensors,
        grad_outputs=grad_outputs,
        retain_graph=retain_graph,
        create_graph=create_graph,
        allow_unused=True,
        materialize_grads=True,
    )
    return torch.cat([g.reshape(-1) for g in grads])
