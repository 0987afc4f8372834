r"""Numba kernels and their plain-NumPy twins (STYLE.md §4: every kernel keeps a twin, for reading and tests).

The equations are numbered as in :mod:`consensus_admm.solver`:

* ``sync_node_run`` / ``sync_node_run_np``: DADMM single-average node form (S1)-(S4), alpha = 1.
* ``edge_run`` / ``edge_run_np``: explicit edge state (z_e, lam_{e,i}, lam_{e,j}); a "tick" activates a set of
  edges: (A1) every endpoint recomputes x_q from the tick-start state, then (A2)-(A3) each activated edge whose two
  messages were delivered updates.  One edge per tick is Wei-Ozdaglar async; all edges per tick is sync Jacobi.
* ``star_run`` / ``star_run_np``: Boyd global consensus (B1)-(B3).
* ``edge_update`` / ``edge_update_np``: (A2)-(A3) for one edge, shared by ``edge_run`` and ``EdgeConsensus``.

Kernels never draw random numbers: drop decisions arrive as pre-drawn uniforms ``drop_u`` (one pair per edge
occurrence in a tick; a message is lost when its uniform is < drop_prob) and schedules as edge-id arrays.

The prox dispatch (``prox_node``) implements objectives.(P3)-(P5) on packed per-agent arrays (see
``objectives.pack``): kind 0 averaging, 1 separable (diagonal H, l1, box), 2 dense H (Cholesky or coordinate
descent). All kernels use ``cache=True``; the arithmetic of each twin follows its kernel operation by operation, so
the two agree to round-off (tests/consensus_admm/test_admm_kernels.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# ----------------------------------------------------------------------------------------------------------------
# Prox dispatch
# ----------------------------------------------------------------------------------------------------------------


@njit(cache=True)
def coordinate_descent(hmat_i, s, rhs, l1, lo, hi, x, hx, tol, max_iter):
    """Minimise 0.5 x'(H + sI)x - rhs'x + sum_k l1_k |x_k| on [lo, hi] in place on x (objectives (P5))."""
    n = x.shape[0]
    for k in range(n):
        acc = 0.0
        for j in range(n):
            acc += hmat_i[k, j] * x[j]
        hx[k] = acc + s * x[k]
    for _ in range(max_iter):
        biggest = 0.0
        for k in range(n):
            hkk = hmat_i[k, k] + s
            r = rhs[k] - hx[k] + hkk * x[k]
            a = abs(r) - l1[k]
            new = 0.0
            if a > 0:
                new = (a if r > 0 else -a) / hkk
            new = min(max(new, lo[k]), hi[k])
            delta = new - x[k]
            if delta != 0.0:
                for j in range(n):
                    hx[j] += delta * hmat_i[j, k]
                hx[k] += delta * s
                x[k] = new
                if abs(delta) > biggest:
                    biggest = abs(delta)
        xmax = 1.0
        for k in range(n):
            if abs(x[k]) > xmax:
                xmax = abs(x[k])
        if biggest <= tol * xmax:
            break


@njit(cache=True)
def prox_node(i, s, v, out, kind, wgt, g, hdiag, hmat, chol, l1, lo, hi, nonsmooth, inner_tol, inner_max,
              work, work2):
    """out <- prox_{f_i / s}(v) (objectives (P1), (P3)-(P5)); ``out`` holds the warm start on entry."""
    dim = v.shape[0]
    if kind == 0:  # (P3), averaging without bounds
        inv_ws = 1.0 / (wgt[i] + s)
        for k in range(dim):
            out[k] = (g[i, k] + s * v[k]) * inv_ws
    elif kind == 1:  # (P3), separable with l1 and box
        for k in range(dim):
            r = g[i, k] + s * v[k]
            a = abs(r) - l1[i, k]
            val = 0.0
            if a > 0:
                val = a if r > 0 else -a
            val = val / (hdiag[i, k] + s)
            out[k] = min(max(val, lo[i, k]), hi[i, k])
    else:
        for k in range(dim):
            work[k] = g[i, k] + s * v[k]
        if not nonsmooth[i]:  # (P4): L L' x = rhs
            c = chol[i]
            for k in range(dim):
                acc = work[k]
                for j in range(k):
                    acc -= c[k, j] * work2[j]
                work2[k] = acc / c[k, k]
            for k in range(dim - 1, -1, -1):
                acc = work2[k]
                for j in range(k + 1, dim):
                    acc -= c[j, k] * out[j]
                out[k] = acc / c[k, k]
        else:  # (P5)
            for k in range(dim):
                out[k] = min(max(out[k], lo[i, k]), hi[i, k])
            coordinate_descent(hmat[i], s, work, l1[i], lo[i], hi[i], out, work2, inner_tol, inner_max)


# ----------------------------------------------------------------------------------------------------------------
# Sync node form (DADMM), alpha = 1
# ----------------------------------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _neighbour_rows(cur, indptr, indices, i, zero, rest):
    """(S2) without a pass per neighbour: return two rows whose sum is sum_{j in N_i} x_j -- the two neighbours'
    own rows when d_i = 2 (a ring: no extra pass), (x_j, ``zero``) when d_i = 1, and (``rest``, ``zero``) with
    ``rest`` = x_j0 + x_j1 + x_j2 + ... summed in one pre-pass when d_i >= 3."""
    a = indptr[i]
    d = indptr[i + 1] - a
    c0 = cur[indices[a]]
    if d == 1:
        return c0, zero
    c1 = cur[indices[a + 1]]
    if d == 2:
        return c0, c1
    c2 = cur[indices[a + 2]]
    for k in range(rest.shape[0]):
        rest[k] = c0[k] + c1[k] + c2[k]
    for jj in range(a + 3, indptr[i + 1]):
        cj = cur[indices[jj]]
        for k in range(rest.shape[0]):
            rest[k] += cj[k]
    return rest, zero


@njit(cache=True)
def sync_node_run(n_iter, x, lam, xbuf, zbar_prev, zbar, rho, indptr, indices, degree,
                  kind, wgt, g, hdiag, hmat, chol, l1, lo, hi, nonsmooth, inner_tol, inner_max):
    """Run ``n_iter`` >= 1 iterations of (S1)-(S4) in place on ``x`` and ``lam`` (both (N, dim)).

    One fused pass per node and iteration: the neighbour mean of the current x (S2), the previous iteration's dual
    update (S3), (S4) and the next local step (S1) into the other buffer, in one loop over the vector with no
    division or branch per element (averaging inlined); the first two neighbours are read in that loop, further
    ones are summed in one pre-pass (:func:`_neighbour_rows`), so a ring node reads each input row once. On return
    ``zbar_prev`` and ``zbar`` hold (S4) before and after the last iteration (for the dual residual (R2)).
    """
    n, dim = x.shape
    rest = np.empty(dim, dtype=x.dtype)
    zero = np.zeros(dim, dtype=x.dtype)
    v = np.empty(dim, dtype=x.dtype)
    work = np.empty(dim, dtype=x.dtype)
    work2 = np.empty(dim, dtype=x.dtype)
    cur = x
    nxt = xbuf
    for p in range(n_iter):
        for i in range(n):
            d = degree[i]
            s = rho * d
            inv_d = 1.0 / d
            inv_s = 1.0 / s
            fac = 0.5 * s if p > 0 else 0.0
            c0, c1 = _neighbour_rows(cur, indptr, indices, i, zero, rest)
            ci = cur[i]
            li = lam[i]
            ni = nxt[i]
            if p == n_iter - 1:
                zi = zbar_prev[i]
                for k in range(dim):
                    zi[k] = 0.5 * (ci[k] + (c0[k] + c1[k]) * inv_d)
            if kind == 0:  # averaging inlined: (S2), (S3), (S4), (S1) in one loop
                inv_ws = 1.0 / (wgt[i] + s)
                gi = g[i]
                for k in range(dim):
                    xb = (c0[k] + c1[k]) * inv_d  # (S2)
                    c = ci[k]
                    lk = li[k] + fac * (c - xb)  # (S3) of the previous iteration
                    li[k] = lk
                    ni[k] = (gi[k] + s * (0.5 * (c + xb) - lk * inv_s)) * inv_ws  # (S4), (S1) by (P3)
            else:
                for k in range(dim):
                    xb = (c0[k] + c1[k]) * inv_d
                    c = ci[k]
                    lk = li[k] + fac * (c - xb)
                    li[k] = lk
                    v[k] = 0.5 * (c + xb) - lk * inv_s
                    ni[k] = c  # warm start of the inner solver
                prox_node(i, s, v, ni, kind, wgt, g, hdiag, hmat, chol, l1, lo, hi, nonsmooth, inner_tol,
                          inner_max, work, work2)  # (S1)
        tmp = cur
        cur = nxt
        nxt = tmp
    for i in range(n):
        d = degree[i]
        half_s = 0.5 * rho * d
        inv_d = 1.0 / d
        c0, c1 = _neighbour_rows(cur, indptr, indices, i, zero, rest)
        ci = cur[i]
        li = lam[i]
        zi = zbar[i]
        for k in range(dim):
            xb = (c0[k] + c1[k]) * inv_d  # (S2)
            li[k] = li[k] + half_s * (ci[k] - xb)  # (S3)
            zi[k] = 0.5 * (ci[k] + xb)  # (S4)
    if n_iter % 2 == 1:
        x[:, :] = xbuf


def neighbour_mean_np(x, indptr, indices, degree):
    """(S2): x_bar_i = (1/d_i) sum_{j in N_i} x_j, rows summed left to right in CSR order (as the kernel does).

    Not ``np.add.reduceat``: along axis 0 it does not add a segment's rows left to right (three rows give
    x_1 + (x_2 + x_3)), and one ulp of difference here is enough to move an iterative prox's stopping test (the
    logistic prox's Newton) and leave the generic path 1e-11..1e-9 away from ``consensus_admm.mpi``.
    """
    starts = indptr[:-1]
    acc = x[indices[starts]].copy()  # every node has a neighbour (connected graph)
    for k in range(1, int(degree.max())):  # k-th neighbour of every node that has one, added in place
        rows = np.flatnonzero(degree > k)
        acc[rows] += x[indices[starts[rows] + k]]
    return acc * (1.0 / degree)[:, None]


def sync_node_run_np(n_iter, x, lam, rho, indptr, indices, degree, prox_batch):
    """NumPy twin of :func:`sync_node_run`; returns (x, lam, zbar_prev, zbar) as new arrays.

    ``prox_batch(idx, v, s, x_warm)`` returns prox_{f_i/s_i}(v_i) for the agents ``idx``.
    """
    s = (rho * degree).astype(x.dtype)[:, None]
    inv_s = (1.0 / (rho * degree)).astype(x.dtype)[:, None]
    lam = lam.copy()
    idx = np.arange(x.shape[0])
    zbar_prev = None
    for p in range(n_iter):
        xbar = neighbour_mean_np(x, indptr, indices, degree).astype(x.dtype)  # (S2)
        if p > 0:
            lam += 0.5 * s * (x - xbar)  # (S3)
        if p == n_iter - 1:
            zbar_prev = 0.5 * (x + xbar)
        v = 0.5 * (x + xbar) - lam * inv_s  # (S4)
        x = prox_batch(idx, v, s[:, 0], x)  # (S1)
    xbar = neighbour_mean_np(x, indptr, indices, degree).astype(x.dtype)
    lam += 0.5 * s * (x - xbar)
    return x, lam, zbar_prev, 0.5 * (x + xbar)


# ----------------------------------------------------------------------------------------------------------------
# Edge form (async Wei-Ozdaglar and sync Jacobi with explicit edge state)
# ----------------------------------------------------------------------------------------------------------------


@njit(cache=True)
def edge_update(e, i, j, xi, xj, z, lam, S, Lam, rho, alpha):
    """(A2)-(A3) for edge e = (i, j) in place; returns (||x_i - z_e||_inf, ||x_j - z_e||_inf, rho ||dz_e||_inf).

    ``S`` and ``Lam`` (N, dim) are the running sums sum_{e in E(q)} z_e and sum_{e in E(q)} lam_{e,q}. One loop
    over the vector on row views, no division per element.
    """
    dim = xi.shape[0]
    ze = z[e]
    le0 = lam[e, 0]
    le1 = lam[e, 1]
    si = S[i]
    sj = S[j]
    li = Lam[i]
    lj = Lam[j]
    inv_2rho = 0.5 / rho
    beta = 1.0 - alpha
    ri = 0.0
    rj = 0.0
    dz = 0.0
    for k in range(dim):
        zo = ze[k]
        xhi = alpha * xi[k] + beta * zo  # over-relaxation (Boyd §3.4.3)
        xhj = alpha * xj[k] + beta * zo
        zn = 0.5 * (xhi + xhj) + (le0[k] + le1[k]) * inv_2rho  # (A2)
        dli = rho * (xhi - zn)  # (A3)
        dlj = rho * (xhj - zn)
        le0[k] += dli
        le1[k] += dlj
        si[k] += zn - zo
        sj[k] += zn - zo
        li[k] += dli
        lj[k] += dlj
        ze[k] = zn
        ri = max(ri, abs(xi[k] - zn))
        rj = max(rj, abs(xj[k] - zn))
        dz = max(dz, abs(zn - zo))
    return ri, rj, rho * dz


def edge_update_np(e, i, j, xi, xj, z, lam, S, Lam, rho, alpha):
    """NumPy twin of :func:`edge_update` (same arithmetic, vectorised over the dimension)."""
    zo = z[e].copy()
    beta = 1.0 - alpha
    xhi = alpha * xi + beta * zo
    xhj = alpha * xj + beta * zo
    zn = 0.5 * (xhi + xhj) + (lam[e, 0] + lam[e, 1]) * (0.5 / rho)
    dli = rho * (xhi - zn)
    dlj = rho * (xhj - zn)
    lam[e, 0] += dli
    lam[e, 1] += dlj
    S[i] += zn - zo
    S[j] += zn - zo
    Lam[i] += dli
    Lam[j] += dlj
    z[e] = zn
    return float(np.max(np.abs(xi - zn))), float(np.max(np.abs(xj - zn))), rho * float(np.max(np.abs(zn - zo)))


@njit(cache=True)
def edge_run(tick_ptr, tick_edges, drop_u, drop_prob, x, z, lam, S, Lam, rho, alpha, edges, degree, stamp, tick0,
             msgs, floats, activations, balanced,
             kind, wgt, g, hdiag, hmat, chol, l1, lo, hi, nonsmooth, inner_tol, inner_max):
    """Process ticks ``t`` with edges ``tick_edges[tick_ptr[t]:tick_ptr[t+1]]``, in place.

    (A1) each endpoint q of the tick's edges (once per tick, stamped with the global tick id ``tick0 + t``) sets
    x_q = prox_{f_q/(rho d_q)}((S_q - Lam_q/rho)/d_q); then each edge counts two messages and, if both were
    delivered (``drop_u[o, 0], drop_u[o, 1] >= drop_prob``), runs (A2)-(A3).
    """
    dim = x.shape[1]
    v = np.empty(dim, dtype=x.dtype)
    work = np.empty(dim, dtype=x.dtype)
    work2 = np.empty(dim, dtype=x.dtype)
    inv_rho = 1.0 / rho
    for t in range(tick_ptr.shape[0] - 1):
        tid = tick0 + t
        for o in range(tick_ptr[t], tick_ptr[t + 1]):
            e = tick_edges[o]
            for side in range(2):
                q = edges[e, side]
                if stamp[q] != tid:
                    stamp[q] = tid
                    d = degree[q]
                    inv_d = 1.0 / d
                    sq = S[q]
                    lq = Lam[q]
                    for k in range(dim):
                        v[k] = (sq[k] - lq[k] * inv_rho) * inv_d  # (A1)
                    prox_node(q, rho * d, v, x[q], kind, wgt, g, hdiag, hmat, chol, l1, lo, hi, nonsmooth,
                              inner_tol, inner_max, work, work2)
        for o in range(tick_ptr[t], tick_ptr[t + 1]):
            e = tick_edges[o]
            i = edges[e, 0]
            j = edges[e, 1]
            fl = dim if balanced[e] else 2 * dim
            msgs[i] += 1
            msgs[j] += 1
            floats[i] += fl
            floats[j] += fl
            activations[e] += 1
            if drop_prob > 0.0 and (drop_u[o, 0] < drop_prob or drop_u[o, 1] < drop_prob):
                continue
            edge_update(e, i, j, x[i], x[j], z, lam, S, Lam, rho, alpha)
            balanced[e] = True


def edge_run_np(tick_ptr, tick_edges, drop_u, drop_prob, x, z, lam, S, Lam, rho, alpha, edges, degree, stamp, tick0,
                msgs, floats, activations, balanced, prox_batch):
    """NumPy twin of :func:`edge_run` (in place); ``prox_batch(idx, v, s, x_warm)`` as in ``sync_node_run_np``."""
    dim = x.shape[1]
    for t in range(tick_ptr.shape[0] - 1):
        tid = tick0 + t
        tick = tick_edges[tick_ptr[t]:tick_ptr[t + 1]]
        nodes = []
        for e in tick:
            for q in edges[e]:
                if stamp[q] != tid:
                    stamp[q] = tid
                    nodes.append(q)
        nodes = np.asarray(nodes, dtype=np.int64)
        d = degree[nodes].astype(x.dtype)[:, None]
        v = (S[nodes] - Lam[nodes] * (1.0 / rho)) * (1.0 / d)  # (A1)
        x[nodes] = prox_batch(nodes, v, rho * d[:, 0], x[nodes])
        for o in range(tick_ptr[t], tick_ptr[t + 1]):
            e = tick_edges[o]
            i, j = edges[e]
            fl = dim if balanced[e] else 2 * dim
            msgs[i] += 1
            msgs[j] += 1
            floats[i] += fl
            floats[j] += fl
            activations[e] += 1
            if drop_prob > 0.0 and (drop_u[o, 0] < drop_prob or drop_u[o, 1] < drop_prob):
                continue
            edge_update_np(e, i, j, x[i], x[j], z, lam, S, Lam, rho, alpha)
            balanced[e] = True


# ----------------------------------------------------------------------------------------------------------------
# Star (Boyd global consensus)
# ----------------------------------------------------------------------------------------------------------------


@njit(cache=True)
def star_run(n_iter, x, u, zc, zc_prev, rho, alpha,
             kind, wgt, g, hdiag, hmat, chol, l1, lo, hi, nonsmooth, inner_tol, inner_max):
    """Run ``n_iter`` iterations of (B1)-(B3) in place; ``zc_prev`` gets z before the last iteration."""
    n, dim = x.shape
    v = np.empty(dim, dtype=x.dtype)
    work = np.empty(dim, dtype=x.dtype)
    work2 = np.empty(dim, dtype=x.dtype)
    znew = np.empty(dim, dtype=x.dtype)
    for _ in range(n_iter):
        for i in range(n):
            for k in range(dim):
                v[k] = zc[k] - u[i, k]
            prox_node(i, rho, v, x[i], kind, wgt, g, hdiag, hmat, chol, l1, lo, hi, nonsmooth, inner_tol,
                      inner_max, work, work2)  # (B1)
        for k in range(dim):
            znew[k] = 0.0
        for i in range(n):
            for k in range(dim):
                znew[k] += (alpha * x[i, k] + (1.0 - alpha) * zc[k]) + u[i, k]
        for k in range(dim):
            znew[k] = znew[k] / n  # (B2)
        for i in range(n):
            for k in range(dim):
                u[i, k] += (alpha * x[i, k] + (1.0 - alpha) * zc[k]) - znew[k]  # (B3)
        for k in range(dim):
            zc_prev[k] = zc[k]
            zc[k] = znew[k]


def star_run_np(n_iter, x, u, zc, rho, alpha, prox_batch):
    """NumPy twin of :func:`star_run`; returns (x, u, zc, zc_prev) as new arrays."""
    n = x.shape[0]
    idx = np.arange(n)
    s = np.full(n, rho, dtype=x.dtype)
    u = u.copy()
    zc_prev = zc
    for _ in range(n_iter):
        x = prox_batch(idx, zc[None, :] - u, s, x)  # (B1)
        xh = alpha * x + (1.0 - alpha) * zc[None, :]
        znew = np.zeros_like(zc)
        for i in range(n):  # sequential sum, as in the kernel
            znew += xh[i] + u[i]
        znew = znew / n  # (B2)
        u += xh - znew[None, :]  # (B3)
        zc_prev, zc = zc, znew
    return x, u, zc, zc_prev
