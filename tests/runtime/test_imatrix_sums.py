"""The importance matrix's arithmetic against llama.cpp's loops (tools/imatrix/imatrix.cpp), transcribed."""

from __future__ import annotations

import numpy as np
import pytest

from ondevice.runtime.imatrix_sums import dense_sums, expert_sums


def _llama_dense(x: np.ndarray, w3: int, w2: int) -> tuple[np.ndarray, int]:
    n3, n2, n1, n0 = x.shape
    values = np.zeros(w3 * w2 * n0, dtype=np.float64)
    for i3 in range(n3):
        for i2 in range(n2):
            mat_id = (i3 % w3) * w2 + (i2 % w2)
            for row in range(n1):
                for j in range(n0):
                    values[mat_id * n0 + j] += float(x[i3, i2, row, j]) ** 2
    return values.reshape(w3 * w2, n0), (n3 * n2 * n1) // (w3 * w2)


def _llama_experts(x: np.ndarray, ids: np.ndarray, n_as: int) -> tuple[np.ndarray, np.ndarray]:
    n_tokens, n_rows, n0 = x.shape
    values = np.zeros((n_as, n0), dtype=np.float64)
    counts = np.zeros(n_as, dtype=np.float64)
    for idx in range(ids.shape[1]):
        for row in range(n_tokens):
            ex = ids[row, idx]
            counts[ex] += 1
            values[ex] += x[row, idx % n_rows].astype(np.float64) ** 2
    return values, counts


@pytest.mark.parametrize(
    ("shape", "mats"),
    [((1, 1, 20, 6), (1, 1)), ((1, 3, 17, 5), (1, 3)), ((2, 3, 4, 5), (1, 3)), ((1, 4, 16, 3), (1, 2))],
)
def test_dense_sums_are_llama_cpps_per_column_sums_of_squares(shape, mats):
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    sums, rows = dense_sums(x, mats)
    want, want_rows = _llama_dense(x, *mats)
    np.testing.assert_allclose(sums, want, rtol=1e-5)
    assert rows == want_rows and sums.dtype == np.float32


def test_dense_sums_read_a_strided_view_as_its_values():
    """The worker hands over views of ggml tensors whose rows may be padded (nb[1] > ne[0] * 4)."""
    padded = np.random.default_rng(2).normal(size=(1, 1, 18, 8)).astype(np.float32)
    view = padded[:, :, :, :5]
    np.testing.assert_allclose(
        dense_sums(view)[0], _llama_dense(np.ascontiguousarray(view), 1, 1)[0], rtol=1e-5
    )


@pytest.mark.parametrize("n_rows", [1, 2])
def test_expert_sums_follow_the_routing(n_rows):
    rng = np.random.default_rng(3)
    n_tokens, n_used, n_as = 24, 2, 5
    x = rng.normal(size=(n_tokens, n_rows, 7)).astype(np.float32)
    ids = np.stack([rng.choice(n_as, size=n_used, replace=False) for _ in range(n_tokens)]).astype(np.int32)
    sums, counts = expert_sums(x, ids, n_as)
    want, want_counts = _llama_experts(x, ids, n_as)
    np.testing.assert_allclose(sums, want, rtol=1e-5)
    np.testing.assert_array_equal(counts, want_counts)
    assert counts.sum() == n_tokens * n_used


def test_an_expert_nothing_was_routed_to_stays_empty_and_bad_ids_are_refused():
    x = np.ones((4, 1, 3), dtype=np.float32)
    sums, counts = expert_sums(x, np.zeros((4, 1), dtype=np.int32), 3)
    assert counts.tolist() == [4, 0, 0] and sums[1:].sum() == 0 and sums[0].tolist() == [4, 4, 4]
    with pytest.raises(ValueError, match="expert id"):
        expert_sums(x, np.full((4, 1), 3, dtype=np.int32), 3)
