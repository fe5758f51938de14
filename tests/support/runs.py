"""Saved bench and eval runs of a made-up SmolLM2 quantization ladder, as `ondevice bench` and
`ondevice eval` would have written them."""

from __future__ import annotations

from ondevice.kinds import Kind
from ondevice.measure.results import BenchResult, BenchRun, EvalRun, Memory, ModelRecord, QualityResult, Rate
from ondevice.measure.stats import Estimate


def record(name: str, quant: str, size_mb: float, bpw: float) -> ModelRecord:
    return ModelRecord(
        name,
        name,
        f"/models/{name}.gguf",
        Kind.INSTRUCT,
        quant,
        "llama",
        int(size_mb * 1e6),
        134_515_008,
        bpw,
    )


LADDER = [
    record("smollm2-135m-instruct:F16", "F16", 270.9, 16.0),
    record("smollm2-135m-instruct:Q8_0", "Q8_0", 144.8, 8.5),
    record("smollm2-135m-instruct:Q4_K_M", "Q4_K_M", 105.5, 6.17),
    record("smollm2-135m-instruct:Q2_K", "Q2_K", 88.2, 5.24),
]


def saved_bench() -> BenchRun:
    def result(model: ModelRecord, pp: float, tg: float) -> BenchResult:
        return BenchResult(
            model,
            "CPU",
            2,
            512,
            0,
            4096,
            512,
            128,
            5,
            Rate(pp, pp / 50, pp, (pp,)),
            Rate(tg, tg / 40, tg, (tg,)),
            Estimate(0.4, 0.01),
            0.3,
            Memory(int(model.file_size_bytes * 1.3), model.file_size_bytes, 12_000_000, 30_000_000),
        )

    speeds = [(410.2, 31.8), (702.5, 48.9), (655.1, 52.3), (590.7, 55.0)]
    return BenchRun(
        created="2026-01-01T10:00:00Z",
        machine={"cpu_model": "test"},
        llama_cpp_version="0.3.36",
        results=[result(m, pp, tg) for m, (pp, tg) in zip(LADDER, speeds, strict=True)],
        id="bench-20260101-100000-1",
    )


def eval_run(reference: ModelRecord, reference_ppl: float, quality: list[QualityResult], **fields) -> EvalRun:
    """An eval run over 8 chunks of 512 tokens of pydoc's topics, as `ondevice eval` records one."""
    return EvalRun(
        created="2026-01-01T11:00:00Z",
        machine={"cpu_model": "test"},
        llama_cpp_version="0.3.36",
        text_source="pydoc_data.topics",
        n_ctx=512,
        n_chunks=8,
        reference=reference,
        reference_ppl=Estimate(reference_ppl, 0.3),
        quality=quality,
        **fields,
    )


def saved_eval() -> EvalRun:
    figures = [(0.0011, 0.986, 1.0009), (0.0212, 0.928, 1.0231), (0.1350, 0.802, 1.1544)]
    return eval_run(
        LADDER[0],
        14.2,
        [
            QualityResult(
                m,
                2040,
                Estimate(14.2 * ratio, 0.3),
                ppl_ratio=Estimate(ratio, 0.001),
                kld=Estimate(kld, kld / 30),
                same_top=Estimate(top, 0.004),
            )
            for m, (kld, top, ratio) in zip(LADDER[1:], figures, strict=True)
        ],
        id="eval-20260101-110000-1",
    )
