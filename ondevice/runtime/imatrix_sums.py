"""The arithmetic of llama.cpp's importance matrix (tools/imatrix/imatrix.cpp), on numpy arrays.

What enters a weight's matrix multiplication is a stack of rows, one per token; the matrix keeps, per
input column, the sum of the squared values over every row, and how many rows were summed. An expert
weight (MoE, MUL_MAT_ID) keeps one such row of sums and one count per expert, fed only by the tokens
routed to that expert. numpy only: the worker calls these on views of llama.cpp's tensors.
"""

from __future__ import annotations

import numpy as np


def dense_sums(x: np.ndarray, weight_mats: tuple[int, int] = (1, 1)) -> tuple[np.ndarray, int]:
    """Per-column sums of squares of `x` (ne3, ne2, ne1 rows, ne0 columns: a ggml tensor's axes,
    reversed), for a weight of `weight_mats` = (ne3, ne2) stacked matrices; rows of slice (i3, i2)
    feed matrix (i3 % ne3) * ne2 + (i2 % ne2), as llama.cpp broadcasts them. Returns float32 sums
    (n_mat, ne0) and the rows each matrix received."""
    w3, w2 = weight_mats
    n3, n2, n1, n0 = x.shape
    sums = np.zeros((w3 * w2, n0), dtype=np.float32)
    for i3 in range(n3):
        for i2 in range(n2):
            rows = x[i3, i2]
            sums[(i3 % w3) * w2 + (i2 % w2)] += np.einsum("ij,ij->j", rows, rows)
    return sums, (n3 * n2 * n1) // (w3 * w2)


def expert_sums(x: np.ndarray, ids: np.ndarray, n_experts: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-expert, per-column sums of squares for an expert weight: `x` (n_tokens, n_rows, ne0) is what
    enters (n_rows is 1 when every chosen expert sees the same row), `ids` (n_tokens, n_used) the experts
    each token was routed to. Returns float32 sums (n_experts, ne0) and counts (n_experts,)."""
    n_tokens, n_rows, n0 = x.shape
    if ids.shape[0] != n_tokens:
        raise ValueError(f"{ids.shape[0]} routing rows for {n_tokens} tokens")
    if ids.size and (ids.min() < 0 or ids.max() >= n_experts):
        raise ValueError(f"an expert id outside 0..{n_experts - 1}")
    sums = np.zeros((n_experts, n0), dtype=np.float32)
    counts = np.zeros(n_experts, dtype=np.float32)
    experts = np.arange(n_experts)[:, None]
    for slot in range(ids.shape[1]):
        chosen = ids[:, slot]
        rows = x[:, slot % n_rows, :]
        # A one-hot routing matrix turns the scatter-add into one matrix product.
        routing = (chosen[None, :] == experts).astype(np.float32)
        sums += routing @ (rows * rows)
        counts += np.bincount(chosen, minlength=n_experts).astype(np.float32)
    return sums, counts
