"""Bench and eval runs as people and spreadsheets read them: llama-bench's markdown and CSV tables,
llama-perplexity's quality figures, and one comparison table per eval run."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..quant_names import QuantTag, base_level, made_with_imatrix, quant_tags
from ..units import format_bytes, format_params

if TYPE_CHECKING:
    from .results import BenchResult, BenchRun, EvalRun, ModelRecord
    from .stats import Estimate

T = TypeVar("T")


def bench_rows(run: BenchRun) -> list[dict[str, Any]]:
    """One row per model, thread count and test, as llama-bench's CSV has them."""
    rows = []
    for r in run.results:
        ttft = r.time_to_first_token_seconds
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
                    "ttft_s": round(ttft.value, 6) if ttft else "",
                    "load_s": round(r.load_seconds, 4),
                    "peak_rss_bytes": r.memory.peak_rss_bytes,
                    "model_buffer_bytes": r.memory.model_buffer_bytes,
                    "kv_cache_bytes": r.memory.kv_cache_bytes,
                    "compute_buffer_bytes": r.memory.compute_buffer_bytes,
                }
            )
    return rows


def bench_markdown(run: BenchRun) -> str:
    speed = markdown_table(
        ["model", "size", "params", "backend", "ngl", "threads", "test", "t/s"],
        [
            [
                row["model_type"],
                format_bytes(row["model_size"]),
                format_params(row["model_n_params"]),
                row["backend"],
                str(row["n_gpu_layers"]),
                str(row["n_threads"]),
                row["test"],
                f"{row['avg_ts']:.2f} ± {row['stddev_ts']:.2f}",
            ]
            for row in bench_rows(run)
        ],
        right=[1, 2, 4, 5, 7],
    )
    memory = markdown_table(
        ["model", "file", "peak RSS", "weights", "KV cache", "compute reserved", "load", "first token"],
        [
            [
                r.model.name,
                format_bytes(r.model.file_size_bytes),
                format_bytes(r.memory.peak_rss_bytes),
                format_bytes(r.memory.model_buffer_bytes),
                format_bytes(r.memory.kv_cache_bytes),
                format_bytes(r.memory.compute_buffer_bytes),
                f"{r.load_seconds:.3f} s",
                f"{r.time_to_first_token_seconds.value:.3f} s" if r.time_to_first_token_seconds else "-",
            ]
            for r in _first_per_model(run.results)
        ],
        right=[1, 2, 3, 4, 5, 6, 7],
    )
    split = [
        [r.model.name, d.device, d.description]
        + [format_bytes(n) for n in (d.model_bytes, d.kv_cache_bytes, d.compute_bytes)]
        for r in _first_per_model(run.results)
        for d in r.split
    ]
    if not split:
        return f"{speed}\n\n{memory}\n"
    headers = ["model", "device", "where", "weights", "KV cache", "compute"]
    devices = markdown_table(headers, split, right=[3, 4, 5])
    return f"{speed}\n\n{memory}\n\n{devices}\n"


def eval_rows(run: EvalRun) -> list[dict[str, Any]]:
    """One row per model with every figure this run measured (empty where it did not)."""
    rows: dict[str, dict[str, Any]] = {}

    def row(record: ModelRecord) -> dict[str, Any]:
        return rows.setdefault(
            record.path,
            {
                "model": record.name,
                "ref": record.ref,
                "kind": record.kind.value,
                "quant": record.quant,
                "bits_per_weight": record.bits_per_weight,
                "model_size": record.file_size_bytes,
                "n_ctx": run.n_ctx,
                "n_chunks": run.n_chunks,
                "reference": run.reference.name if run.reference else "",
                **dict.fromkeys(_EVAL_FIGURES, ""),
            },
        )

    for q in run.quality:
        r = row(q.model)
        for name, estimate in (("ppl", q.ppl), ("ppl_ratio", q.ppl_ratio), ("kld", q.kld)):
            if estimate is not None:
                r[name], r[f"{name}_uncertainty"] = round(estimate.value, 6), round(estimate.uncertainty, 6)
        for name, value in (
            ("kld_median", q.kld_median),
            ("kld_p99", q.kld_p99),
            ("kld_max", q.kld_max),
            ("same_top", q.same_top.value if q.same_top else None),
            ("delta_p", q.delta_p.value if q.delta_p else None),
            ("delta_p_rms", q.delta_p_rms.value if q.delta_p_rms else None),
        ):
            if value is not None:
                r[name] = round(value, 6)
    for f in run.follow:
        r = row(f.model)
        r.update(
            follow_prompt_mode=f.prompt_mode.value,
            follow_prompt_strict=round(f.prompt_strict, 6),
            follow_prompt_loose=round(f.prompt_loose, 6),
            follow_instruction_strict=round(f.instruction_strict, 6),
            follow_instruction_loose=round(f.instruction_loose, 6),
        )
    for b in run.speed:
        r = row(b.model)
        r.update(
            pp_ts=round(b.pp.mean, 4) if b.pp else "",
            tg_ts=round(b.tg.mean, 4) if b.tg else "",
            peak_rss_bytes=b.memory.peak_rss_bytes,
        )
    return list(rows.values())


def eval_markdown(run: EvalRun) -> str:
    parts = []
    if run.quality:
        parts.append(quality_markdown(run))
        if gain := matrix_gain_markdown(run):
            parts.append(gain)
    if run.follow:
        parts.append(follow_markdown(run))
    parts.append(comparison_markdown(run))
    parts += [f"Left out: {s.reason}" for s in run.skipped]
    return "\n\n".join(parts) + "\n"


def quality_markdown(run: EvalRun) -> str:
    def est(e: Estimate | None, digits: int, scale: float = 1.0, unit: str = "") -> str:
        return e.format(digits, scale, unit) if e else "-"

    def num(v: float | None) -> str:
        return f"{v:.5f}" if v is not None else "-"

    rows = []
    if run.reference is not None and run.reference_ppl is not None:
        rows.append([f"{run.reference.name} (reference)", est(run.reference_ppl, 4)] + ["-"] * 8)
    for q in side_by_side(run.quality, lambda q: q.model):
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
    title = f"Quality over {run.n_chunks} chunks of {run.n_ctx} tokens of {run.text_source}" + (
        f", against {run.reference.name}" if run.reference else ""
    )
    head = ["model", "PPL", "PPL ratio", "KLD", "KLD median", "KLD p99", "KLD max", "same top", "Δp"]
    table = markdown_table(
        [*head, "Δp RMS"],
        rows,
        right=list(range(1, 10)),
    )
    return f"{title}\n\n{table}"


def matrix_key(record: ModelRecord) -> tuple[object, ...]:
    """What a file made with an importance matrix shares with the plain file of its level: the same
    weights (architecture, parameters), the same level and the same hand-chosen tensor types."""
    tags = quant_tags(record.quant)
    return (record.architecture, record.parameter_count, base_level(record.quant), QuantTag.CUSTOM in tags)


def side_by_side(items: list[T], record_of: Callable[[T], ModelRecord]) -> list[T]:
    """`items` in their order, except that a level's plain and importance-matrix files come together
    (where the first of them was)."""
    groups: dict[tuple[object, ...], int] = {}
    return sorted(items, key=lambda item: groups.setdefault(matrix_key(record_of(item)), len(groups)))


def matrix_gain_markdown(run: EvalRun) -> str:
    """Each level measured both plain and with an importance matrix, side by side: what the matrix
    bought in KLD (the ratio, below 1 when it helped) and in same-top; empty when there is no pair."""
    plain = {matrix_key(q.model): q for q in run.quality if not made_with_imatrix(q.model.quant)}
    rows = []
    for q in run.quality:
        other = plain.get(matrix_key(q.model))
        if not made_with_imatrix(q.model.quant) or other is None:
            continue
        if q.kld is None or other.kld is None:
            continue
        rows.append(
            [
                base_level(q.model.quant),
                format_bytes(other.model.file_size_bytes),
                f"{other.kld.value:.5f}",
                f"{q.kld.value:.5f}",
                f"{q.kld.value / other.kld.value:.3f}" if other.kld.value > 0 else "-",
                _pct(other.same_top.value) if other.same_top else "-",
                _pct(q.same_top.value) if q.same_top else "-",
            ]
        )
    if not rows:
        return ""
    head = [
        "level",
        "size",
        "KLD plain",
        "KLD imatrix",
        "imatrix / plain",
        "same top plain",
        "same top imatrix",
    ]
    return "What the importance matrix bought\n\n" + markdown_table(head, rows, right=list(range(1, 7)))


def follow_markdown(run: EvalRun) -> str:
    types = sorted({t for f in run.follow for t in f.by_type})
    head = ["model", "prompt", "strict", "loose", "instr. strict", "instr. loose"]
    rows = [
        [
            f.model.name,
            f.prompt_mode.value,
            _pct(f.prompt_strict),
            _pct(f.prompt_loose),
            _pct(f.instruction_strict),
            _pct(f.instruction_loose),
        ]
        for f in run.follow
    ]
    overall = markdown_table(head, rows, right=[2, 3, 4, 5])
    per_type = markdown_table(
        ["instruction", *(f.model.name for f in run.follow)],
        [
            [t] + [f"{s.strict}/{s.total}" if (s := f.by_type.get(t)) else "-" for f in run.follow]
            for t in types
        ],
        right=list(range(1, len(run.follow) + 1)),
    )
    return f"Instruction following ({len(run.follow[0].outcomes)} prompts)\n\n{overall}\n\n{per_type}"


def comparison_markdown(run: EvalRun) -> str:
    """Size, speed, memory, KLD, same-top and follow score of every model in one table."""
    models: dict[str, dict[str, str]] = {}

    def row(record: ModelRecord) -> dict[str, str]:
        return models.setdefault(
            record.path,
            {
                "model": record.name,
                "kind": record.kind.value,
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
    records = {m.path: m for m in [*(s.model for s in run.speed), *(q.model for q in run.quality)]}
    records.update({f.model.path: f.model for f in run.follow})
    order = side_by_side(list(models), lambda path: records[path])
    table = markdown_table(
        present,
        [[models[path].get(c, "-") for c in present] for path in order],
        right=[i for i, c in enumerate(present) if c not in ("model", "kind", "quant")],
    )
    note = " (follow: strict / loose, prompt level)" if run.follow else ""
    return f"Comparison{note}\n\n{table}"


_EVAL_FIGURES = (
    "ppl",
    "ppl_uncertainty",
    "ppl_ratio",
    "ppl_ratio_uncertainty",
    "kld",
    "kld_uncertainty",
    "kld_median",
    "kld_p99",
    "kld_max",
    "same_top",
    "delta_p",
    "delta_p_rms",
    "follow_prompt_mode",
    "follow_prompt_strict",
    "follow_prompt_loose",
    "follow_instruction_strict",
    "follow_instruction_loose",
    "pp_ts",
    "tg_ts",
    "peak_rss_bytes",
)


def csv_text(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return out.getvalue()


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


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.1f} %"
