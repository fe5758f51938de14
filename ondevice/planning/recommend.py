"""Which quantization levels of a family fit a memory budget, with how much context, best quality first."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..quant_names import base_level, canonical_quant
from ..runtime.protocol import LoadOptions
from .model_pairs import ModelPair, pairs_for
from .preflight import KV_PAD, ModelShape, estimate_memory

__all__ = ["LEVEL_BITS", "NOT_MEASURED_SOURCE", "TYPICAL", "Recommendation", "measured_quality", "recommend"]

MIN_CONTEXT = 2048  # below this a level does not count as fitting: too short for a real chat
TYPICAL_SOURCE = "typical: llama.cpp's quantize table (PPL increase over F16 on Llama-3-8B)"
NOT_MEASURED_SOURCE = "not measured: run `ondevice eval` (llama.cpp's table has no figure for this level)"


@dataclass(frozen=True)
class Typical:
    bits_per_weight: float
    ppl_increase: float


# From llama.cpp's tools/quantize/quantize.cpp: file size of Llama-3-8B (8.03 B parameters) at each
# level, turned into bits per weight, and the perplexity it adds over F16. Tiny models (rows not a
# multiple of 256) get more bits per weight at K-quant levels than these: the levels fall back.
TYPICAL = {
    "F32": Typical(32.0, 0.0),
    "BF16": Typical(16.0, 0.0),
    "F16": Typical(16.0, 0.002),
    "Q8_0": Typical(8.52, 0.0026),
    "Q6_K": Typical(6.57, 0.0217),
    "Q5_K_M": Typical(5.70, 0.0569),
    "Q5_K_S": Typical(5.57, 0.1049),
    "Q5_1": Typical(6.04, 0.1062),
    "Q5_0": Typical(5.57, 0.1316),
    "Q4_K_M": Typical(4.90, 0.1754),
    "Q4_K_S": Typical(4.67, 0.2689),
    "Q4_1": Typical(5.11, 0.4511),
    "Q4_0": Typical(4.64, 0.4685),
    "Q3_K_L": Typical(4.31, 0.5562),
    "Q3_K_M": Typical(4.00, 0.6569),
    "Q3_K_S": Typical(3.65, 1.6321),
    "Q2_K": Typical(3.17, 3.5199),
}
# Typical bits per weight of every level: TYPICAL's, plus the i-quants and ternary levels GGUF repos also
# publish, which llama.cpp's quantize table gives only as bits per weight.
LEVEL_BITS: dict[str, float] = {
    **{name: typical.bits_per_weight for name, typical in TYPICAL.items()},
    "Q2_K_S": 2.97,
    "IQ4_NL": 4.50,
    "IQ4_XS": 4.25,
    "IQ3_M": 3.66,
    "IQ3_S": 3.44,
    "IQ3_XS": 3.30,
    "IQ3_XXS": 3.06,
    "IQ2_M": 2.70,
    "IQ2_S": 2.50,
    "IQ2_XS": 2.31,
    "IQ2_XXS": 2.06,
    "IQ1_M": 1.75,
    "IQ1_S": 1.56,
    "TQ2_0": 2.06,
    "TQ1_0": 1.69,
}
LOSSY_PPL_INCREASE = 0.3  # beyond this (below Q4_K_S) a smaller model at a better level usually wins
# Levels without a typical PPL figure (i-quants, Q2_K_S) are lossy below this many bits per weight: an
# i-quant holds more per bit than a K-quant, and the IQ4 levels (4.25, 4.5) measure about like Q4_K_S,
# the IQ3 levels and below like the Q3_K levels the table counts as lossy.
LOSSY_BITS = 4.0


@dataclass(frozen=True)
class Recommendation:
    pair: str
    size: str
    parameters: int
    quant: str
    bits_per_weight: float
    weights_bytes: int
    max_context: int  # the most context that fits (capped at the trained context); 0: does not fit
    needed_bytes: int  # at max_context, or at MIN_CONTEXT when it does not fit
    quality_loss: float | None  # None: a level with neither a measured nor a typical figure
    quality_source: str
    rank: int = 0

    @property
    def fits(self) -> bool:
        return self.max_context >= MIN_CONTEXT

    def as_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "pair": self.pair,
            "size": self.size,
            "parameters": self.parameters,
            "quant": self.quant,
            "bits_per_weight": self.bits_per_weight,
            "weights_bytes": self.weights_bytes,
            "fits": self.fits,
            "max_context": self.max_context,
            "needed_bytes": self.needed_bytes,
            "quality_loss": self.quality_loss,
            "quality_source": self.quality_source,
        }


def recommend(
    family: str,
    budget_bytes: int,
    *,
    n_batch: int = 512,
    measured: dict[tuple[str, str], tuple[float, str]] | None = None,
) -> tuple[list[Recommendation], list[str]]:
    """Every level of every pair in ``family`` against ``budget_bytes`` of RAM (headroom already taken).

    Returns the levels ranked (fitting ones first, best quality first) and notes on what was skipped.
    ``measured`` maps (pair name, quant name) to (loss, source), e.g. from :func:`measured_quality`.

    Each ladder level is a row, sized by its typical bits per weight (i-quants from ``LEVEL_BITS``). A
    measured tagged variant of a level (``Q4_K_M-imat``) is a row of its own, the level's size with its
    own measured loss. A level with no measured figure and none in llama.cpp's table (the i-quants) is
    still listed, as it fits or not, but with ``quality_loss`` None and :data:`NOT_MEASURED_SOURCE`,
    ranked after its model's rows that have a figure: no number is made up for it.
    """
    measured = measured if measured is not None else measured_quality()
    rows: list[Recommendation] = []
    notes: list[str] = []
    for pair in pairs_for(family):
        if pair.architecture is None:
            notes.append(
                f"{pair.name}: no [architecture] table (ships fixed files); see `ondevice models info`"
            )
            continue
        unsized = [q for q in pair.ladder if _bits_per_weight(q) is None]
        if unsized:
            notes.append(f"{pair.name}: no typical bits per weight for {', '.join(unsized)}; left out")
        rows += _levels(pair, budget_bytes, n_batch, measured)
    ranked = sorted(rows, key=_rank_key)
    return [_with_rank(r, i) for i, r in enumerate(ranked, start=1)], notes


def _levels(
    pair: ModelPair, budget: int, n_batch: int, measured: dict[tuple[str, str], tuple[float, str]]
) -> Iterator[Recommendation]:
    arch = pair.architecture
    assert arch is not None
    shape = ModelShape.from_architecture(arch)
    per_cell = shape.kv_bytes_per_cell()
    for level in dict.fromkeys(q.upper() for q in pair.ladder):
        bits = _bits_per_weight(level)
        if bits is None:
            continue
        weights = int(arch.parameters * bits / 8)
        base = estimate_memory(shape, weights, LoadOptions(n_ctx=KV_PAD, n_batch=n_batch, use_mmap=False))
        fixed = base.total_bytes - per_cell * KV_PAD
        cells = math.floor((budget - fixed) / per_cell) if per_cell else arch.context_length
        context = min(arch.context_length, cells // KV_PAD * KV_PAD)
        context = context if context >= MIN_CONTEXT else 0
        needed = int(fixed + per_cell * max(context, MIN_CONTEXT))
        typical = TYPICAL.get(level)
        unmeasured = (typical.ppl_increase, TYPICAL_SOURCE) if typical else (None, NOT_MEASURED_SOURCE)
        variants = sorted(q for name, q in measured if name == pair.name and base_level(q) == level)
        for quant in dict.fromkeys([level, *variants]):  # the plain level, then its measured variants
            loss, source = measured.get((pair.name, quant), unmeasured)
            yield Recommendation(
                pair.name, pair.size, arch.parameters, quant, bits, weights, context, needed, loss, source
            )


def _bits_per_weight(quant: str) -> float | None:
    """Typical bits per weight of a level or of a tagged name's level; None for an unknown level."""
    return LEVEL_BITS.get(base_level(quant).upper())


def _is_lossy(quant: str) -> bool:
    # By the level, not by a measured figure: a KLD is not on the PPL-increase scale of the threshold,
    # and a level should not change group when someone measures it. Tags (imat) keep their level's group.
    level = base_level(quant).upper()
    if level in TYPICAL:
        return TYPICAL[level].ppl_increase > LOSSY_PPL_INCREASE
    bits = _bits_per_weight(level)
    return bits is None or bits < LOSSY_BITS


def _rank_key(r: Recommendation) -> tuple:
    # Fitting levels first; then the usable levels (Q4_K_S and better) of the larger model ahead of the
    # smaller, then the lossy ones; inside a model, the smaller loss first, levels with no figure last.
    unknown = r.quality_loss is None
    loss = 0.0 if r.quality_loss is None else r.quality_loss
    return (not r.fits, _is_lossy(r.quant), -r.parameters, unknown, loss, -r.max_context)


def _with_rank(r: Recommendation, rank: int) -> Recommendation:
    return Recommendation(**{**r.__dict__, "rank": rank})


def measured_quality(runs: Path | None = None) -> dict[tuple[str, str], tuple[float, str]]:
    """Mean KL divergence per (pair name, quant name) from the saved eval runs (newest wins).

    Quant names are canonical (`Q4_K_M`, `Q4_K_M-imat`, `IQ4_XS`); names of no known level are dropped.
    """
    from ..measure.results import EvalRun
    from ..measure.runs import load_runs
    from .model_pairs import model_pairs

    pairs = [p for p in model_pairs() if not p.bundled]
    found: dict[tuple[str, str], tuple[float, str]] = {}
    evals = [run for _, run in load_runs(runs, kind="eval") if isinstance(run, EvalRun)]
    for run in reversed(evals):  # oldest first: a newer run's figure replaces an older one's
        for quality in run.quality:
            quant = canonical_quant(quality.model.quant)
            if quality.kld is None or _bits_per_weight(quant) is None:
                continue
            for pair in pairs:
                if _names_pair(quality.model.ref, pair) or _names_pair(quality.model.name, pair):
                    kld = quality.kld.value
                    found[(pair.name, quant)] = (kld, f"measured: mean KLD {kld:.4f} (run {run.id})")
    return found


def _names_pair(ref: str, pair: ModelPair) -> bool:
    ref = ref.lower().removeprefix("hf:").partition(":")[0].partition("@")[0]
    repos = {repo.lower() for repo in (pair.base, pair.instruct) if repo}  # an instruct-only pair has one
    return ref in repos or ref.rpartition("/")[2] in {r.rpartition("/")[2] for r in repos} or ref == pair.name
