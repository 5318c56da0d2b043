"""Nearest-neighbour normality memory for the pattern anomaly model (PatchCore-style, no pretraining).

Why: the pattern model predicts a cell from its neighbours, so a large defect whose context is
anomalous too gets a matching (anomalous) prediction and a low score. Comparing each real token's
Siamese embedding with a bank of embeddings of good parts does not depend on the context: a
token unlike every good token is anomalous whatever surrounds it.

Rows of a bank are ``[unit feature (d) | token centre y, x in image units]``; the position
columns are multiplied by a weight at query time (0 = ignore where a token is, useful for
unaligned textures; > 0 = compare mostly with the same place of aligned parts).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from numba import njit

from inference.ssm import speed


def weighted(rows: torch.Tensor, position_weight: float) -> torch.Tensor:
    """Scale the two trailing position columns by ``position_weight`` (a copy)."""
    out = rows.clone()
    out[:, -2:] *= position_weight
    return out


def knn_distance(queries: torch.Tensor, bank: torch.Tensor, k: int = 1, chunk: int = 8192,
                 query_ids: torch.Tensor | None = None, bank_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Mean Euclidean distance of each query row (n, D) to its ``k`` nearest bank rows (m, D) -> (n,).

    ``query_ids``/``bank_ids`` (long) leave out bank rows taken from the query's own image
    (leave-one-image-out statistics of the training images that built the bank).
    """
    if k < 1 or k > len(bank):
        raise ValueError(f"k must be in [1, {len(bank)}], got {k}")
    b2 = (bank * bank).sum(1)
    out = []
    for s in range(0, len(queries), chunk):
        q = queries[s:s + chunk]
        # |q|^2 is the same along a row, so it is added after the search (one fused matmul here:
        # the elementwise sums of the textbook form cost twice the matmul on one CPU thread).
        part = torch.addmm(b2, q, bank.T, alpha=-2.0)
        if query_ids is not None and bank_ids is not None:
            part.masked_fill_(query_ids[s:s + chunk, None] == bank_ids[None], float("inf"))
        near = part.amin(1, keepdim=True) if k == 1 else _smallest(part, k)
        out.append((near + (q * q).sum(1, keepdim=True)).clamp_min(0).sqrt().mean(1))
    return torch.cat(out) if out else queries.new_zeros(0)


@njit(cache=True, nogil=True)
def _smallest_rows(part, out):
    """out[i] = the k = out.shape[1] smallest values of part[i], ascending (one pass, k kept sorted).

    Serial on purpose: a numba parallel region must not be entered from two threads at once
    (see ``inference.ssm.cpu_scan``), and this pass is memory-bound beside the matmul anyway.
    """
    k = out.shape[1]
    for i in range(part.shape[0]):
        best = out[i]
        best[:] = np.inf
        row = part[i]
        worst = best[k - 1]
        for j in range(row.shape[0]):
            v = row[j]
            if v < worst:
                p = k - 1
                while p > 0 and best[p - 1] > v:
                    best[p] = best[p - 1]
                    p -= 1
                best[p] = v
                worst = best[k - 1]


def _smallest(part: torch.Tensor, k: int) -> torch.Tensor:
    """The k smallest values of each row, ascending: ``topk(k, largest=False).values``.

    Why not topk: on a CPU, torch's topk over 8,192 bank rows took 4x the time of this single
    pass (which keeps the k best in a sorted array; the same values come out), about a quarter
    of the nearest-neighbour search beside the matmul (issue 21).
    """
    if not speed.enabled() or part.device.type != "cpu" or part.dtype != torch.float32:
        return part.topk(k, dim=1, largest=False).values
    out = torch.empty((part.shape[0], k), dtype=part.dtype)
    _smallest_rows(part.contiguous().numpy(), out.numpy())
    return out


@njit(cache=True, nogil=True)
def _nearest_rows(queries, bank_t, b2, best, arg):
    """best[i], arg[i] = min over j of b2[j] - 2 queries[i] . bank[j], and its j (the first on ties).

    One query at a time against the transposed bank, accumulating in a row of bank length (it
    stays in cache), so the (queries x bank) block is never written out: with 16-dimensional rows
    the matmul behind ``addmm`` is bound by writing and re-reading that block (issue 21).
    """
    n, d = queries.shape
    m = bank_t.shape[1]
    acc = np.empty(m, np.float32)
    for i in range(n):
        acc[:] = b2
        for k in range(d):
            c = np.float32(-2.0) * queries[i, k]
            row = bank_t[k]
            for j in range(m):
                acc[j] += c * row[j]
        bi = 0
        bv = acc[0]
        for j in range(1, m):
            if acc[j] < bv:
                bv = acc[j]
                bi = j
        best[i] = bv
        arg[i] = bi


def nearest_rows(queries: torch.Tensor, bank: torch.Tensor, b2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(min over bank rows of |b|^2 - 2 q.b, the row's index) per query; add |q|^2 for the squared
    distance. ``b2`` is the bank's squared norms. The fused numba pass on a CPU in float32 with the
    faster paths on, else ``addmm`` and ``min`` (equal to float32 rounding; a tie may pick another
    row at the same distance)."""
    if not speed.enabled() or queries.device.type != "cpu" or queries.dtype != torch.float32 or bank.dtype != torch.float32:
        return torch.addmm(b2, queries, bank.T, alpha=-2.0).min(1)
    best = torch.empty(len(queries), dtype=torch.float32)
    arg = torch.empty(len(queries), dtype=torch.int64)
    _nearest_rows(queries.contiguous().numpy(), bank.T.contiguous().numpy(), b2.contiguous().numpy(),
                  best.numpy(), arg.numpy())
    return best, arg


def greedy_coreset(rows: torch.Tensor, size: int, seed: int = 0,
                   progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Indices of ``size`` rows chosen by greedy k-centre (farthest point first).

    Keeps the rare good tokens (edges, highlights) that a random subsample would drop, so they
    do not become false alarms; ``size >= len(rows)`` keeps every row. ``progress(n)``: n more
    rows picked (every 256 and at the end; a trainer's bar with an ETA, issue 21).
    """
    n = len(rows)
    if size >= n:
        return torch.arange(n)
    g = torch.Generator().manual_seed(seed)
    norms = (rows * rows).sum(1)
    chosen = torch.empty(size, dtype=torch.long)
    cur = int(torch.randint(n, (1,), generator=g))
    min_d = torch.full((n,), float("inf"))
    for i in range(size):
        chosen[i] = cur
        c = rows[cur]
        d = norms + float(c @ c) - 2.0 * (rows @ c)
        torch.minimum(min_d, d, out=min_d)
        cur = int(min_d.argmax())
        if progress is not None and ((i + 1) % 256 == 0 or i + 1 == size):
            progress(256 if (i + 1) % 256 == 0 else (i + 1) % 256)
    return chosen
