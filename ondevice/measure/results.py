"""Measurement results as plain data: the CLI prints them, JSON stores them, the TUI shows them."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, field
from typing import Any

from ..refs import ResolvedModel
from ..units import format_bytes
from .stats import Estimate

SCHEMA_VERSION = 1  # of saved bench and eval runs; a reader refuses a newer one with a clear line


@dataclass(frozen=True)
class ModelRecord:
    """Which file was measured."""

    name: str
    ref: str
    path: str
    kind: str
    quant: str
    architecture: str | None
    file_size_bytes: int
    parameter_count: int
    bits_per_weight: float

    @classmethod
    def of(cls, model: ResolvedModel) -> ModelRecord:
        s = model.summary
        return cls(
            name=model.display_name,
            ref=model.ref,
            path=str(model.path),
            kind=model.kind.value,
            quant=model.quant,
            architecture=s.architecture,
            file_size_bytes=s.file_size,
            parameter_count=s.parameter_count,
            bits_per_weight=round(s.bits_per_weight, 3),
        )

    @property
    def label(self) -> str:
        """llama-bench's model column: architecture, size class and quantization."""
        return f"{self.architecture or '?'} {_params(self.parameter_count)} {self.quant}"


@dataclass(frozen=True)
class Rate:
    """Tokens per second over the repetitions of one test."""

    mean: float
    stddev: float
    median: float
    samples: tuple[float, ...]

    def format(self) -> str:
        return f"{self.mean:.2f} ± {self.stddev:.2f}"


@dataclass(frozen=True)
class Memory:
    peak_rss_bytes: int  # of the worker, loaded without mmap so the weights count
    model_buffer_bytes: int
    kv_cache_bytes: int
    compute_buffer_bytes: int


@dataclass(frozen=True)
class BenchResult:
    """One model at one thread count: llama-bench's pp and tg tests, plus load, first token and memory."""

    model: ModelRecord
    backend: str
    n_threads: int
    n_batch: int
    n_gpu_layers: int
    n_ctx: int
    n_prompt: int
    n_gen: int
    repetitions: int
    pp: Rate | None
    tg: Rate | None
    time_to_first_token: Estimate | None  # seconds: mean ± stddev after a p-token prompt
    load_seconds: float
    memory: Memory


@dataclass
class BenchRun:
    """One `ondevice bench` call."""

    created: str
    machine: dict[str, Any]
    llama_cpp_version: str
    results: list[BenchResult] = field(default_factory=list)
    kind: str = "bench"
    id: str = ""
    schema: int = SCHEMA_VERSION

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def rows(self) -> list[dict[str, Any]]:
        """One row per model, thread count and test, as llama-bench's CSV has them."""
        rows = []
        for r in self.results:
            for test, n, rate in (("pp", r.n_prompt, r.pp), ("tg", r.n_gen, r.tg)):
                if rate is None:
                    continue
                rows.append(
                    {
                        "model": r.model.name,
                        "model_type": r.model.label,
                        "model_size": r.model.file_size_bytes,
                        "model_n_params": r.model.parameter_count,
                        "bits_per_weight": r.model.bits_per_weight,
                        "backend": r.backend,
                        "n_gpu_layers": r.n_gpu_layers,
                        "n_threads": r.n_threads,
                        "n_batch": r.n_batch,
                        "n_ctx": r.n_ctx,
                        "test": f"{test}{n}",
                        "n_prompt": n if test == "pp" else 0,
                        "n_gen": n if test == "tg" else 0,
                        "avg_ts": round(rate.mean, 4),
                        "stddev_ts": round(rate.stddev, 4),
                        "median_ts": round(rate.median, 4),
                        "samples_ts": ";".join(f"{s:.4f}" for s in rate.samples),
                        "ttft_s": round(r.time_to_first_token.value, 6) if r.time_to_first_token else "",
                        "load_s": round(r.load_seconds, 4),
                        "peak_rss_bytes": r.memory.peak_rss_bytes,
                        "model_buffer_bytes": r.memory.model_buffer_bytes,
                        "kv_cache_bytes": r.memory.kv_cache_bytes,
                        "compute_buffer_bytes": r.memory.compute_buffer_bytes,
                    }
                )
        return rows

    def to_csv(self) -> str:
        rows = self.rows()
        out = io.StringIO()
        if rows:
            writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        return out.getvalue()

    def to_markdown(self) -> str:
        speed = markdown_table(
            ["model", "size", "params", "backend", "ngl", "threads", "test", "t/s"],
            [
                [
                    row["model_type"],
                    _mib(row["model_size"]),
                    _params(row["model_n_params"]),
                    row["backend"],
                    str(row["n_gpu_layers"]),
                    str(row["n_threads"]),
                    row["test"],
                    f"{row['avg_ts']:.2f} ± {row['stddev_ts']:.2f}",
                ]
                for row in self.rows()
            ],
            right=[1, 2, 4, 5, 7],
        )
        memory = markdown_table(
            ["model", "file", "peak RSS", "weights", "KV cache", "compute", "load", "first token"],
            [
                [
                    r.model.name,
                    format_bytes(r.model.file_size_bytes),
                    format_bytes(r.memory.peak_rss_bytes),
                    format_bytes(r.memory.model_buffer_bytes),
                    format_bytes(r.memory.kv_cache_bytes),
                    format_bytes(r.memory.compute_buffer_bytes),
                    f"{r.load_seconds:.2f} s",
                    f"{r.time_to_first_token.value * 1000:.0f} ms" if r.time_to_first_token else "-",
                ]
                for r in _first_per_model(self.results)
            ],
            right=[1, 2, 3, 4, 5, 6, 7],
        )
        return f"{speed}\n\n{memory}\n"


@dataclass(frozen=True)
class QualityResult:
    """One model's perplexity and, against the reference, llama-perplexity's KL divergence figures."""

    model: ModelRecord
    n_scored: int  # positions scored
    ppl: Estimate
    ln_ppl_ratio: Estimate | None = None
    ppl_ratio: Estimate | None = None
    kld: Estimate | None = None
    kld_median: float | None = None
    kld_p99: float | None = None
    kld_max: float | None = None
    same_top: Estimate | None = None  # fraction
    delta_p: Estimate | None = None  # mean p(model) - p(reference) of the right token
    delta_p_rms: Estimate | None = None


@dataclass(frozen=True)
class TypeScore:
    strict: int
    loose: int
    total: int


@dataclass(frozen=True)
class PromptOutcome:
    id: str
    strict: bool
    loose: bool
    failed: tuple[str, ...]  # instruction types not followed (strictly)
    response: str


@dataclass(frozen=True)
class FollowResult:
    """IFEval-style accuracy: a prompt counts when all its instructions are followed."""

    model: ModelRecord
    prompt_mode: str  # "chat_template" or "completion"
    prompt_strict: float
    prompt_loose: float
    instruction_strict: float
    instruction_loose: float
    by_type: dict[str, TypeScore]
    outcomes: tuple[PromptOutcome, ...]


@dataclass
class EvalRun:
    """One `ondevice eval` call."""

    created: str
    machine: dict[str, Any]
    llama_cpp_version: str
    text_source: str
    n_ctx: int
    n_chunks: int
    reference: ModelRecord | None
    reference_ppl: Estimate | None
    quality: list[QualityResult] = field(default_factory=list)
    follow: list[FollowResult] = field(default_factory=list)
    speed: list[BenchResult] = field(default_factory=list)
    kind: str = "eval"
    id: str = ""
    schema: int = SCHEMA_VERSION

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        parts = []
        if self.quality:
            parts.append(self.quality_markdown())
        if self.follow:
            parts.append(self.follow_markdown())
        parts.append(comparison_markdown(self))
        return "\n\n".join(parts) + "\n"

    def quality_markdown(self) -> str:
        def est(e: Estimate | None, digits: int, scale: float = 1.0, unit: str = "") -> str:
            return e.format(digits, scale, unit) if e else "-"

        def num(v: float | None) -> str:
            return f"{v:.5f}" if v is not None else "-"

        rows = []
        if self.reference is not None and self.reference_ppl is not None:
            rows.append([f"{self.reference.name} (reference)", est(self.reference_ppl, 4)] + ["-"] * 8)
        for q in self.quality:
            rows.append(
                [
                    q.model.name,
                    est(q.ppl, 4),
                    est(q.ppl_ratio, 4),
                    est(q.kld, 5),
                    num(q.kld_median),
                    num(q.kld_p99),
                    num(q.kld_max),
                    est(q.same_top, 2, 100, " %"),
                    est(q.delta_p, 3, 100, " %"),
                    est(q.delta_p_rms, 3, 100, " %"),
                ]
            )
        title = f"Quality over {self.n_chunks} chunks of {self.n_ctx} tokens of {self.text_source}" + (
            f", against {self.reference.name}" if self.reference else ""
        )
        head = ["model", "PPL", "PPL ratio", "KLD", "KLD median", "KLD p99", "KLD max", "same top", "Δp"]
        table = markdown_table(
            [*head, "Δp RMS"],
            rows,
            right=list(range(1, 10)),
        )
        return f"{title}\n\n{table}"

    def follow_markdown(self) -> str:
        types = sorted({t for f in self.follow for t in f.by_type})
        head = ["model", "prompt", "strict", "loose", "instr. strict", "instr. loose"]
        rows = [
            [
                f.model.name,
                f.prompt_mode,
                _pct(f.prompt_strict),
                _pct(f.prompt_loose),
                _pct(f.instruction_strict),
                _pct(f.instruction_loose),
            ]
            for f in self.follow
        ]
        overall = markdown_table(head, rows, right=[2, 3, 4, 5])
        per_type = markdown_table(
            ["instruction", *(f.model.name for f in self.follow)],
            [
                [t] + [f"{s.strict}/{s.total}" if (s := f.by_type.get(t)) else "-" for f in self.follow]
                for t in types
            ],
            right=list(range(1, len(self.follow) + 1)),
        )
        return f"Instruction following ({len(self.follow[0].outcomes)} prompts)\n\n{overall}\n\n{per_type}"


def comparison_markdown(run: EvalRun) -> str:
    """Size, speed, memory, KLD, same-top and follow score of every model in one table."""
    models: dict[str, dict[str, str]] = {}

    def row(record: ModelRecord) -> dict[str, str]:
        return models.setdefault(
            record.path,
            {
                "model": record.name,
                "kind": record.kind,
                "quant": record.quant,
                "bpw": f"{record.bits_per_weight:.2f}",
                "size": format_bytes(record.file_size_bytes),
            },
        )

    for s in run.speed:
        r = row(s.model)
        r["pp t/s"] = s.pp.format() if s.pp else "-"
        r["tg t/s"] = s.tg.format() if s.tg else "-"
        r["peak RSS"] = format_bytes(s.memory.peak_rss_bytes)
    for q in run.quality:
        r = row(q.model)
        r["PPL"] = f"{q.ppl.value:.3f}"
        r["KLD"] = f"{q.kld.value:.5f}" if q.kld else "-"
        r["same top"] = _pct(q.same_top.value) if q.same_top else "-"
    for f in run.follow:
        row(f.model)["follow"] = f"{_pct(f.prompt_strict)} / {_pct(f.prompt_loose)}"
    columns = ["model", "kind", "quant", "bpw", "size", "pp t/s", "tg t/s", "peak RSS"]
    columns += ["PPL", "KLD", "same top"]
    if run.follow:
        columns.append("follow")
    present = [c for c in columns if any(c in r for r in models.values())]
    table = markdown_table(
        present,
        [[r.get(c, "-") for c in present] for r in models.values()],
        right=[i for i, c in enumerate(present) if c not in ("model", "kind", "quant")],
    )
    note = " (follow: strict / loose, prompt level)" if run.follow else ""
    return f"Comparison{note}\n\n{table}"


def markdown_table(headers: list[str], rows: list[list[str]], right: list[int] | None = None) -> str:
    """A GitHub Markdown table with padded columns; `right` are the right-aligned column indexes."""
    right = right or []
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        padded = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in pairs]
        return "| " + " | ".join(padded) + " |"

    rule = "| " + " | ".join(("-" * (w - 1) + ":") if i in right else "-" * w for i, w in enumerate(widths))
    rule += " |"
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def _first_per_model(results: list[BenchResult]) -> list[BenchResult]:
    seen: dict[str, BenchResult] = {}
    for r in results:
        seen.setdefault(r.model.path, r)
    return list(seen.values())


def _params(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.2f} M"


def _mib(n: int) -> str:
    return f"{n / 1024**2:.2f} MiB"


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.1f} %"
