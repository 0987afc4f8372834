"""Trust-region policy optimization building blocks in PyTorch (no agents, no graphs)."""

__all__: list[str] = []
