"""Reading a module's forward pass as a chain of ``nn.Linear`` layers and elementwise activations.

Shared by the Fisher-vector product's fast path (:mod:`trpo_core.fisher`, equations F2' and F4') and the stacked
value fits (:mod:`trpo_core.value`): both record one forward pass with :class:`Recorder` and accept it as a chain
with :func:`chain_of`, or fall back to autograd.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

__all__ = ["ELEMENTWISE", "Recorder", "chain_of"]

ELEMENTWISE = (nn.Tanh, nn.ReLU, nn.SELU, nn.ELU, nn.CELU, nn.LeakyReLU, nn.Sigmoid, nn.Identity, nn.GELU, nn.SiLU,
               nn.Softplus, nn.Mish)


class Recorder:
    """Records, in call order, every leaf submodule call (module, input, output) during the build forward."""

    def __init__(self, module: nn.Module) -> None:
        self.records: list[tuple[nn.Module, tuple[Any, ...], Any, Any, Any, int]] = []
        leaves = [m for m in module.modules() if not list(m.children())]
        self._handles = [m.register_forward_hook(self._hook) for m in leaves]

    def _hook(self, mod: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        # During functional_call, mod.weight / mod.bias are the snapshot tensors.
        # The output's version counter reveals in-place edits made to it after the call (e.g. h.relu_()).
        version = output._version if isinstance(output, Tensor) else -1
        self.records.append((mod, inputs, output, getattr(mod, "weight", None), getattr(mod, "bias", None), version))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def chain_of(records: list) -> list[tuple] | None:
    """The recorded leaf calls as a chain of ``nn.Linear`` and elementwise activations, or None.

    Returns (kind, module, input, output, weight, bias) per call, kind "linear" or "act", when every call took one
    tensor (2-D for a Linear), the output of the call before it, was not edited in place afterwards, and is a Linear
    or a parameter-free elementwise activation (torch's, or a module with ``elementwise = True``).
    """
    if not records or len({id(r[0]) for r in records}) != len(records):
        return None  # nothing recorded, or a layer called twice (weight sharing)
    chain: list[tuple] = []
    prev_out = None
    for k, (mod, inputs, out, weight, bias, version) in enumerate(records):
        if len(inputs) != 1 or not isinstance(inputs[0], Tensor) or not isinstance(out, Tensor):
            return None
        if out._version != version:
            return None  # modified in place after the layer ran: the recorded chain is not what was computed
        x = inputs[0]
        if k > 0 and x is not prev_out:
            return None  # not a chain (branching, residual, or something between the layers)
        if isinstance(mod, nn.Linear):
            if x.dim() != 2:
                return None
            chain.append(("linear", mod, x, out, weight, bias))
        elif isinstance(mod, ELEMENTWISE) or getattr(mod, "elementwise", False) is True:
            if any(p.requires_grad for p in mod.parameters()):
                return None
            chain.append(("act", mod, x, out, weight, bias))
        else:
            return None
        prev_out = out
    return chain
