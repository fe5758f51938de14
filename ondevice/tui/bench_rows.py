"""What the bench screen shows: a run's saved figures as table rows and plot points.

Textual-free. The screen shows the speed figures of one run and the quality figures of another
(`Shown`), one row per model file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..measure.results import BenchRun, EvalRun, ModelRecord, Rate
from ..measure.runs import Run, SavedRun
from ..measure.stats import Estimate
from ..units import format_bytes

if TYPE_CHECKING:
    from ..live import ModelSpec
    from .picker import Choice


@dataclass(frozen=True)
class ResultRow:
    """One model file's figures in the table: speed from a bench, quality from an eval."""

    key: str  # the file's path: one row per file
    name: str
    quant: str
    size_bytes: int
    bits_per_weight: float
    pp: tuple[float, float] | None = None  # tokens/s: mean, stddev
    tg: tuple[float, float] | None = None
    peak_rss_bytes: int | None = None
    ppl: float | None = None
    kld: tuple[float, float] | None = None  # value, uncertainty
    same_top: float | None = None  # fraction
    ppl_ratio: float | None = None
    follow: tuple[float, float] | None = None  # instruction following, prompt level: strict, loose
    reference: bool = False


def _row(record: ModelRecord, **figures: Any) -> ResultRow:
    return ResultRow(
        key=record.path,
        name=record.name,
        quant=record.quant,
        size_bytes=record.file_size_bytes,
        bits_per_weight=record.bits_per_weight,
        **figures,
    )


def _rate(rate: Rate | None) -> tuple[float, float] | None:
    return (rate.mean, rate.stddev) if rate else None


def _estimate(estimate: Estimate | None) -> tuple[float, float] | None:
    return (estimate.value, estimate.uncertainty) if estimate else None


def speed_rows(run: Run) -> dict[str, ResultRow]:
    """A bench run's results (or an eval run's speed), the first thread count of each model."""
    rows: dict[str, ResultRow] = {}
    for r in run.results if isinstance(run, BenchRun) else run.speed:
        if r.model.path not in rows:
            rows[r.model.path] = _row(
                r.model, pp=_rate(r.pp), tg=_rate(r.tg), peak_rss_bytes=r.memory.peak_rss_bytes
            )
    return rows


def quality_rows(run: Run) -> dict[str, ResultRow]:
    """An eval run's quality results; the reference, when there is one, comes first."""
    rows: dict[str, ResultRow] = {}
    if not isinstance(run, EvalRun):
        return rows
    if run.reference is not None and run.reference_ppl is not None:
        rows[run.reference.path] = _row(
            run.reference, ppl=run.reference_ppl.value, kld=(0.0, 0.0), ppl_ratio=1.0, reference=True
        )
    for q in run.quality:
        rows[q.model.path] = _row(
            q.model,
            ppl=q.ppl.value,
            kld=_estimate(q.kld),
            same_top=q.same_top.value if q.same_top else None,
            ppl_ratio=q.ppl_ratio.value if q.ppl_ratio else None,
        )
    for f in run.follow:
        score = (f.prompt_strict, f.prompt_loose)
        path = f.model.path
        rows[path] = replace(rows[path], follow=score) if path in rows else _row(f.model, follow=score)
    return rows


@dataclass(frozen=True)
class Shown:
    """The runs on screen: the speed figures of one run and the quality figures of another.

    A bench run replaces the speed part, an eval run the quality part (and the speed part too when
    it measured speed). A run about other models than the part it does not replace clears that part,
    so the table never mixes unrelated measurements.
    """

    speed: Run | None = None
    quality: Run | None = None

    def with_run(self, run: Run) -> Shown:
        speed, quality = self.speed, self.quality
        if isinstance(run, BenchRun):
            speed = run
            if quality is not None and not set(speed_rows(run)) & set(quality_rows(quality)):
                quality = None
        else:
            quality = run
            if run.speed:
                speed = run
            elif speed is not None and not set(quality_rows(run)) & set(speed_rows(speed)):
                speed = None
        return Shown(speed, quality)

    @property
    def ids(self) -> list[str]:
        return list(dict.fromkeys(run.id for run in (self.speed, self.quality) if run is not None))

    def rows(self) -> list[ResultRow]:
        """Every model file once, largest first (the quantization ladder from the top)."""
        rows = speed_rows(self.speed) if self.speed is not None else {}
        for key, q in (quality_rows(self.quality) if self.quality is not None else {}).items():
            if key in rows:
                s = rows[key]
                rows[key] = replace(q, pp=s.pp, tg=s.tg, peak_rss_bytes=s.peak_rss_bytes)
            else:
                rows[key] = q
        return sorted(rows.values(), key=lambda r: (-r.size_bytes, r.name))


def point_labels(rows: Sequence[ResultRow]) -> list[str]:
    """Each point's label: its quantization level, or the model's name where levels repeat."""
    quants = [r.quant for r in rows]
    return [r.quant if quants.count(r.quant) == 1 else r.name for r in rows]


def speed_points(rows: Sequence[ResultRow]) -> list[tuple[str, float, float]]:
    """(label, file size in MB, generation tokens/s) of every row measured for speed."""
    return [
        (label, r.size_bytes / 1e6, r.tg[0])
        for label, r in zip(point_labels(rows), rows, strict=True)
        if r.tg
    ]


def kld_points(rows: Sequence[ResultRow]) -> list[tuple[str, float, float]]:
    """(label, file size in MB, mean KLD against the reference) of every row with a KLD."""
    return [
        (label, r.size_bytes / 1e6, r.kld[0])
        for label, r in zip(point_labels(rows), rows, strict=True)
        if r.kld
    ]


# Quality before speed: at 100 columns the table shows the model, its size and its KLD without
# scrolling sideways (the speed figures are also on the plot beside it).
COLUMNS = (
    "model",
    "quant",
    "size",
    "bpw",
    "KLD",
    "same top",
    "PPL",
    "PPL ratio",
    "follow",
    "pp t/s",
    "tg t/s",
    "memory",
)
NAME_WIDTH = 18  # the model column, " (ref)" included; the level has a column of its own


def short_name(row: ResultRow) -> str:
    """The model's name without its quantization, which has a column of its own."""
    return row.name.removesuffix(f":{row.quant}") or row.name


def table_cells(row: ResultRow) -> dict[str, str]:
    """The row's cells by column, only those it has figures for; `±` unspaced to keep them narrow."""
    suffix = " (ref)" if row.reference else ""
    cells = {
        "model": elide(short_name(row), NAME_WIDTH - len(suffix)) + suffix,
        "quant": row.quant,
        "size": format_bytes(row.size_bytes),
        "bpw": f"{row.bits_per_weight:.2f}",
    }
    if row.pp:
        cells["pp t/s"] = f"{row.pp[0]:.1f}±{row.pp[1]:.1f}"
    if row.tg:
        cells["tg t/s"] = f"{row.tg[0]:.1f}±{row.tg[1]:.1f}"
    if row.peak_rss_bytes is not None:
        cells["memory"] = format_bytes(row.peak_rss_bytes)
    if row.ppl is not None:
        cells["PPL"] = f"{row.ppl:.3f}"
    if row.kld is not None:
        cells["KLD"] = "reference" if row.reference else f"{row.kld[0]:.4f}±{row.kld[1]:.4f}"
    if row.same_top is not None:
        cells["same top"] = f"{100 * row.same_top:.1f} %"
    if row.ppl_ratio is not None:
        cells["PPL ratio"] = f"{row.ppl_ratio:.4f}"
    if row.follow is not None:
        cells["follow"] = f"{100 * row.follow[0]:.1f} / {100 * row.follow[1]:.1f} %"
    return cells


def history_label(run: SavedRun) -> str:
    when = run.created[:16].replace("T", " ")
    return f"{run.kind:<5} {when}  {', '.join(run.models) or '(no models)'}"


REFERENCE_WIDTH = 26  # what the settings panel shows of a reference's name


def reference_options(specs: Sequence[ModelSpec], choices: Sequence[Choice]) -> list[tuple[str, str]]:
    """The reference dropdown: the compare's models, then any other model of the store or bundled
    ones (a reference need not be a column), each shown short enough that its level stays in view."""
    shown = {spec.ref for spec in specs}
    options = [(short_label(spec.label), spec.ref) for spec in specs]
    for choice in choices:
        if choice.ref not in shown and not any(alias in shown for alias in choice.aliases):
            options.append((short_label(choice.ref), choice.ref))
            shown.add(choice.ref)
    return options


def short_label(label: str, width: int = REFERENCE_WIDTH) -> str:
    """`label` cut in the middle of its name, never in its :QUANT (smollm2-13…-instruct:Q4_1)."""
    if len(label) <= width:
        return label
    name, colon, quant = label.rpartition(":")
    if not colon or len(quant) > width // 2:
        return label[: width - 1] + "…"
    return f"{elide(name, width - len(quant) - 1)}:{quant}"


def elide(text: str, width: int) -> str:
    """`text` cut in the middle to `width` characters (smollm2-13…-instruct): both ends tell."""
    if len(text) <= width:
        return text
    room = width - 1  # the ellipsis
    head = (room + 1) // 2
    return f"{text[:head]}…{text[len(text) - (room - head) :]}"
