"""Measurement results as plain data: the CLI prints them, JSON stores them, the TUI shows them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..kinds import Kind
from ..prompting import PromptMode
from ..refs import ResolvedModel
from ..units import format_params
from . import report
from .stats import Estimate

# Of saved bench and eval runs; a reader refuses a newer one with a clear line, upgrades an older one.
# 2: `time_to_first_token` became `time_to_first_token_seconds`, the name `run --json` has.
SCHEMA_VERSION = 2


@dataclass(frozen=True)
class ModelRecord:
    """Which file was measured."""

    name: str
    ref: str
    path: str
    kind: Kind
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
            kind=model.kind,
            quant=model.quant,
            architecture=s.architecture,
            file_size_bytes=s.file_size,
            parameter_count=s.parameter_count,
            bits_per_weight=round(s.bits_per_weight, 3),
        )

    @property
    def label(self) -> str:
        """llama-bench's model column: architecture, size class and quantization."""
        return f"{self.architecture or '?'} {format_params(self.parameter_count)} {self.quant}"


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
class DeviceSplit:
    """What llama.cpp put on one device when RPC servers took layers (from its load log)."""

    device: str  # CPU (this machine), RPC0, RPC1 ...
    description: str  # "this machine" or the server's endpoint
    model_bytes: int
    kv_cache_bytes: int
    compute_bytes: int


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
    time_to_first_token_seconds: Estimate | None  # mean ± stddev after a p-token prompt
    load_seconds: float
    memory: Memory
    split: tuple[DeviceSplit, ...] = ()  # per device, with --rpc; empty when all ran here


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A saved run's JSON of an older schema in the current one's shape (the file is left alone)."""
    schema = data.get("schema", 1)
    if isinstance(schema, int) and schema < 2:
        for key in ("results", "speed"):  # a bench's, an eval's
            results = data.get(key)
            for result in results if isinstance(results, list) else ():
                if isinstance(result, dict) and "time_to_first_token" in result:
                    result["time_to_first_token_seconds"] = result.pop("time_to_first_token")
    return data | {"schema": SCHEMA_VERSION}


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
        return report.bench_rows(self)

    def to_csv(self) -> str:
        return report.csv_text(self.rows())

    def to_markdown(self) -> str:
        return report.bench_markdown(self)


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
    prompt_mode: PromptMode
    prompt_strict: float
    prompt_loose: float
    instruction_strict: float
    instruction_loose: float
    by_type: dict[str, TypeScore]
    outcomes: tuple[PromptOutcome, ...]


@dataclass(frozen=True)
class Skipped:
    """A model an eval left out, and why (another tokenizer than the reference's)."""

    model: ModelRecord
    reason: str


@dataclass
class EvalRun:
    """One `ondevice eval` call."""

    created: str
    machine: dict[str, Any]
    llama_cpp_version: str
    text_source: str | None  # None (and n_ctx, n_chunks): no quality run, instruction following only
    n_ctx: int | None
    n_chunks: int | None
    reference: ModelRecord | None
    reference_ppl: Estimate | None
    quality: list[QualityResult] = field(default_factory=list)
    follow: list[FollowResult] = field(default_factory=list)
    speed: list[BenchResult] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    kind: str = "eval"
    id: str = ""
    schema: int = SCHEMA_VERSION

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def rows(self) -> list[dict[str, Any]]:
        """One row per model with every figure this run measured (empty where it did not)."""
        return report.eval_rows(self)

    def to_csv(self) -> str:
        return report.csv_text(self.rows())

    def to_markdown(self) -> str:
        return report.eval_markdown(self)
