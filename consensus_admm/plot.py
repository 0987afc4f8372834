"""Residual plot helper (needs the ``plot`` extra: ``pip install -e ".[plot]"``; matplotlib is imported lazily)."""

from __future__ import annotations

__all__ = ["plot_residuals"]


def plot_residuals(result, ax=None, *, path=None, title: str | None = None):
    """Plot primal/dual residuals, their tolerances and the consensus error against the iteration (log scale).

    Parameters
    ----------
    result : ADMMResult
        From ``solve(..., ADMMSettings(record_history=True))``.
    ax : matplotlib Axes, optional
        Drawn on a new figure when omitted.
    path : str or path-like, optional
        Save the figure there (PNG, PDF, ... by extension).
    title : str, optional

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ValueError
        The result has no history.
    ImportError
        matplotlib is not installed (install the ``plot`` extra).
    """
    if result.history is None:
        raise ValueError("result has no history: solve with ADMMSettings(record_history=True)")
    try:
        import matplotlib

        if ax is None and path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("plot_residuals needs matplotlib: pip install -e '.[plot]'") from exc
    h = result.history
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.semilogy(h.iteration, h.primal_residual, label="primal residual r")
    ax.semilogy(h.iteration, h.dual_residual, label="dual residual s")
    ax.semilogy(h.iteration, h.eps_primal, "--", color="C0", alpha=0.6, label="eps_pri")
    ax.semilogy(h.iteration, h.eps_dual, "--", color="C1", alpha=0.6, label="eps_dual")
    ax.semilogy(h.iteration, h.consensus_error, ":", color="k", label="consensus error")
    unit = "epoch" if result.method == "async" else "iteration"
    ax.set_xlabel(unit)
    ax.set_ylabel("infinity norm")
    ax.set_title(title or f"{result.method} ADMM: {result.status.value} after {result.n_iter} {unit}s")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    if path is not None:
        ax.figure.tight_layout()
        ax.figure.savefig(path, dpi=120)
    return ax
