"""Log-probability kernels for perplexity and KL divergence, in numpy (float32 arrays, float64 sums).

The reference's log-probabilities are stored as llama-perplexity stores them: per position, the
vocabulary's log-probabilities within 16 nats of the top one as uint16 steps, plus a float32 scale
and offset. That is 2 bytes per vocabulary entry (512 KiB per position for Gemma's 262144 tokens,
128 MiB per 512-token chunk) instead of 4, and the rounding error stays below 1.3e-4 nats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOGPROB_RANGE = 16.0  # nats below the top token kept exactly; llama-perplexity's choice
STEPS = 65535


@dataclass(frozen=True)
class ChunkScores:
    """Per scored position: -log p(next token), the top token, and against a reference (when given)
    the KL divergence, p(next) minus the reference's, and whether the top tokens agree."""

    nll: np.ndarray  # float64
    top: np.ndarray  # int32
    kld: np.ndarray | None = None  # float64
    p_diff: np.ndarray | None = None  # float64
    same_top: np.ndarray | None = None  # bool


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax: float32 values, the sum of exponentials in float64 (where float32
    loses digits). The result is within 1e-5 nats of a float64 computation."""
    x = np.asarray(logits, dtype=np.float32)
    shifted = x - x.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(shifted).sum(axis=-1, keepdims=True, dtype=np.float64))
    return shifted - lse.astype(np.float32)


def quantize(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of logits -> (uint16 steps, float32 [scale, min log-prob] per row)."""
    x = np.asarray(logits, dtype=np.float32)
    shifted = x - x.max(axis=1, keepdims=True)
    lse = np.log(np.exp(shifted).sum(axis=1, keepdims=True, dtype=np.float64)).astype(np.float32)
    low = np.maximum(shifted.min(axis=1, keepdims=True), np.float32(-LOGPROB_RANGE))
    scale = -low / STEPS
    inverse = np.divide(1, scale, out=np.zeros_like(scale), where=scale > 0)  # 0 when a row is flat
    steps = np.rint(np.clip((shifted - low) * inverse, 0, STEPS)).astype(np.uint16)
    params = np.concatenate([scale, low - lse], axis=1).astype(np.float32)
    return steps, params


def dequantize(steps: np.ndarray, params: np.ndarray) -> np.ndarray:
    """The stored log-probabilities back as float32 rows."""
    return steps.astype(np.float32) * params[:, :1] + params[:, 1:2]


def kl_divergence(reference_logprobs: np.ndarray, logprobs: np.ndarray) -> np.ndarray:
    """KL(reference ‖ model) per row, over the reference's tokens within LOGPROB_RANGE of zero;
    float32 terms summed in float64."""
    ref = np.asarray(reference_logprobs, dtype=np.float32)
    p = np.exp(ref)
    p[ref <= -LOGPROB_RANGE] = 0.0
    return (p * (ref - np.asarray(logprobs, dtype=np.float32))).sum(axis=1, dtype=np.float64)


def score_rows(
    logits: np.ndarray,
    targets: np.ndarray,
    reference: tuple[np.ndarray, np.ndarray] | None = None,
    reference_nll: np.ndarray | None = None,
    reference_top: np.ndarray | None = None,
) -> ChunkScores:
    """Score rows of logits against the next tokens, and against a stored reference when given."""
    logp = log_softmax(logits)
    rows = np.arange(len(targets))
    nll = -logp[rows, targets].astype(np.float64)
    top = np.asarray(logits).argmax(axis=1).astype(np.int32)
    if reference is None:
        return ChunkScores(nll=nll, top=top)
    kld = kl_divergence(dequantize(*reference), logp)
    assert reference_nll is not None and reference_top is not None
    p_diff = np.exp(-nll) - np.exp(-reference_nll)
    return ChunkScores(nll=nll, top=top, kld=kld, p_diff=p_diff, same_top=top == reference_top)


def concat(parts: list[ChunkScores]) -> ChunkScores:
    """Join the scores of consecutive blocks of rows."""

    def join(values: list[np.ndarray | None]) -> np.ndarray | None:
        """The reference's scores: joined when every block has them."""
        arrays = [v for v in values if v is not None]
        return np.concatenate(arrays) if len(arrays) == len(values) else None

    return ChunkScores(
        nll=np.concatenate([p.nll for p in parts]),
        top=np.concatenate([p.top for p in parts]),
        kld=join([p.kld for p in parts]),
        p_diff=join([p.p_diff for p in parts]),
        same_top=join([p.same_top for p in parts]),
    )


class ReferenceFiles:
    """The reference's quantized log-probabilities on disk: `<base>.steps` (uint16 rows of n_vocab)
    and `<base>.params` (float32 pairs). Opened as memory maps so only the rows in use are resident."""

    def __init__(self, base: str, n_vocab: int) -> None:
        self.base = base
        self.n_vocab = n_vocab

    def write(self, row: int, steps: np.ndarray, params: np.ndarray) -> None:
        for suffix, data in ((".steps", steps), (".params", params)):
            with open(self.base + suffix, "r+b") as handle:
                handle.seek(row * data.shape[1] * data.itemsize)
                handle.write(np.ascontiguousarray(data).tobytes())

    def read(self, row: int, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
        steps = np.memmap(
            self.base + ".steps",
            dtype=np.uint16,
            mode="r",
            offset=row * self.n_vocab * 2,
            shape=(n_rows, self.n_vocab),
        )
        params = np.fromfile(self.base + ".params", dtype=np.float32, count=n_rows * 2, offset=row * 8)
        return steps, params.reshape(n_rows, 2)
