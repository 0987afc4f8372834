"""Consensus ADMM over communication graphs (NumPy, SciPy, Numba, networkx only)."""

__all__: list[str] = []
