"""ondevice profiles list|show|detect|recommend"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from rich.text import Text

from ..errors import OndeviceError
from ..planning import hardware
from ..planning.hardware import Hardware
from ..planning.hardware_profiles import (
    HardwareProfile,
    Selection,
    choose_profile,
    hardware_profiles,
    load_hardware_profile,
)
from ..planning.model_pairs import ModelPair, load_model_pair, model_pairs
from ..planning.profile_files import ProfileError, field_docs, find_profile
from ..planning.recommend import MIN_CONTEXT, TYPICAL_SOURCE, measured_quality, recommend
from ..units import format_bytes, parse_size
from .common import PlainTable, stdout_console
from .doctor import diagnosis, print_diagnosis
from .output import Column, Format, Output, Rows, output_options


@click.group()
def profiles() -> None:
    """Hardware profiles (how to load models on a kind of machine) and model-pair profiles (base + instruct).

    Shipped profiles live inside ondevice; files of the same name under $ONDEVICE_HOME/profiles/hardware
    or $ONDEVICE_HOME/profiles/models replace them.
    """


@profiles.command("list")
@output_options()
def list_profiles(out: Output) -> None:
    """Every hardware and model-pair profile, the one this machine gets marked."""
    picked = choose_profile(hardware.detect_hardware())
    hw, pairs = hardware_profiles(), model_pairs()
    data = {
        "picked": picked.as_dict(),
        "hardware": [p.as_dict() for p in hw],
        "models": [p.as_dict() for p in pairs],
    }
    out.emit(data, lambda: _print_profiles(hw, pairs, picked))


def _print_profiles(hw: list[HardwareProfile], pairs: list[ModelPair], picked: Selection) -> None:
    console = stdout_console()
    table = PlainTable(title="Hardware profiles", title_justify="left")
    table.add_column("name", no_wrap=True)
    for column in ("origin", "context", "gpu layers", "batch", "headroom", "description"):
        table.add_column(column)
    for p in hw:
        name = Text(
            p.name + (" *" if p.name == picked.profile else ""),
            style="bold" if p.name == picked.profile else "",
        )
        table.add_row(
            name, p.origin, str(p.context), str(p.gpu_layers), str(p.batch), p.memory_headroom, p.description
        )
    table.caption = f"* this machine: {picked.reason}"
    console.print(table)
    models = PlainTable(title="Model pairs", title_justify="left")
    models.add_column("name", no_wrap=True)
    for column in ("family", "size", "base", "instruct", "license"):
        models.add_column(column)
    for p in pairs:
        models.add_row(
            p.name,
            p.family,
            p.size,
            p.base or "(none)",
            p.instruct,
            p.license + (" (gated)" if p.gated else ""),
        )
    console.print(models)


@profiles.command()
@click.argument("name", required=False)
@click.option("--kind", type=click.Choice(["hardware", "models"]), default=None, help="Which kind NAME is.")
@click.option("--schema", is_flag=True, help="Document every key a profile file of this kind may set.")
@output_options()
def show(name: str | None, kind: str | None, schema: bool, out: Output) -> None:
    """Show profile NAME (hardware or model pair), or with --schema the keys its files take."""
    if schema:
        _show_schema(kind or _kind_of(name) if name else kind, out)
        return
    if not name:
        raise click.UsageError("give a profile NAME (or --schema)")
    kind = kind or _kind_of(name)
    profile: HardwareProfile | ModelPair = (
        load_hardware_profile(name) if kind == "hardware" else load_model_pair(name)
    )
    data = {"kind": kind, **profile.as_dict()}
    out.emit(data, lambda: _print_profile(data))


def _print_profile(data: dict[str, Any]) -> None:
    table = PlainTable(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for key, value in data.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        table.add_row(key.replace("_", " "), str(value))
    stdout_console().print(table)


def _kind_of(name: str) -> str:
    found = []
    for kind in ("hardware", "models"):
        try:
            find_profile(kind, name)
            found.append(kind)
        except ProfileError:
            continue
    if not found:
        hw = ", ".join(p.name for p in hardware_profiles())
        pairs = ", ".join(p.name for p in model_pairs())
        raise ProfileError(f"no profile named {name!r}; hardware: {hw}; model pairs: {pairs}")
    return found[0]


def _show_schema(kind: str | None, out: Output) -> None:
    kinds = [kind] if kind else ["hardware", "models"]
    classes = {"hardware": HardwareProfile, "models": ModelPair}
    data = {
        k: [
            {"key": key, "type": t, "doc": d, "default": default}
            for key, t, d, default in field_docs(classes[k])
        ]
        for k in kinds
    }
    tables = [
        Rows(
            [
                Column("key", "key"),
                Column("type", "type"),
                Column("default", "default", _schema_default),
                Column("meaning", "doc"),
            ],
            rows,
            title=f"{k} profile keys",
        )
        for k, rows in data.items()
    ]
    out.emit(data, *tables)


def _schema_default(default: Any) -> str:
    if default is None:
        return ""
    return json.dumps(list(default) if isinstance(default, tuple) else default)


@profiles.command()
@click.option(
    "--hardware",
    "hardware_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help='Describe this machine instead (JSON, as `profiles detect --json` prints under "hardware").',
)
@output_options()
def detect(hardware_file: Path | None, out: Output) -> None:
    """Detect this machine (or read a described one) and name the hardware profile it gets, and why."""
    hw = _read_hardware(hardware_file) if hardware_file else hardware.detect_hardware()
    data = diagnosis(hw)
    out.emit(data, lambda: print_diagnosis(data))


def _read_hardware(path: Path) -> Hardware:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Hardware.from_dict(data.get("hardware", data))
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise OndeviceError(f"{path}: not a hardware description: {exc}") from None


@profiles.command("recommend")
@click.argument("family")
@click.option(
    "--ram",
    default=None,
    metavar="SIZE",
    help="Plan for this much RAM instead of what is free now: 8G or 16GB (powers of 1000, as sizes are "
    "printed) or 16GiB; a number needs its unit.",
)
@output_options(Format.TABLE, Format.JSON, Format.CSV)
def recommend_command(family: str, ram: str | None, out: Output) -> None:
    """Quantization levels of FAMILY (or one pair) that fit in memory with their context, best first.

    Quality comes from measured eval runs in the store when there are some (mean KL divergence from
    the reference), otherwise from llama.cpp's typical figures (PPL increase on Llama-3-8B); the
    output says which. A measured tagged file (Q4_K_M-imat) gets a row of its own beside its level. A
    level with neither figure (an i-quant no eval run measured) is listed as "not measured", after its
    model's other rows. Sizes are estimated from typical bits per weight.
    """
    machine = hardware.detect_hardware()
    if ram is not None:
        try:
            ram_bytes = parse_size(ram, bare="refuse")
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--ram") from None
        machine = replace(machine, total_ram_bytes=ram_bytes, available_ram_bytes=ram_bytes, gpus=())
        ram_source = f"--ram {ram}"
    else:
        ram_bytes = machine.available_ram_bytes
        ram_source = "available on this machine now"
    profile = load_hardware_profile(choose_profile(machine).profile)
    budget = ram_bytes - profile.headroom_bytes
    measured = measured_quality()
    levels, notes = recommend(family, budget, n_batch=profile.batch, measured=measured)
    quality = "measured eval runs where marked, typical figures otherwise" if measured else TYPICAL_SOURCE
    if any(r.quality_loss is None for r in levels):
        quality += "; not measured: no typical figure for the level, run `ondevice eval` on it"
    data = {
        "family": family,
        "ram_bytes": ram_bytes,
        "ram_source": ram_source,
        "headroom_bytes": profile.headroom_bytes,
        "budget_bytes": budget,
        "quality": quality,
        "sizes": "typical bits per weight from llama.cpp's quantize table",
        "levels": [r.as_dict() for r in levels],
        "notes": notes,
    }
    ram_text = f"{ram} of RAM" if ram is not None else f"{format_bytes(ram_bytes)} of RAM free"
    fitting = Rows(
        [
            Column("#", "rank"),
            Column("model", "pair", no_wrap=True),
            Column("quant", "quant"),
            Column("bits/weight", "bits_per_weight", lambda b: f"{b:.2f}"),
            Column("weights", "weights_bytes", format_bytes),
            Column("max context", "max_context", lambda n: f"{n:,}"),
            Column("needs", "needed_bytes", format_bytes),
            Column("quality loss", "quality_loss_shown"),
        ],
        [
            {**r.as_dict(), "quality_loss_shown": _quality_cell(r.quality_loss, r.quality_source)}
            for r in levels
            if r.fits
        ],
        title=f"{family}: {ram_text} less {profile.memory_headroom} headroom ({profile.name} profile) "
        f"= {format_bytes(max(budget, 0))} for the model",
        caption=f"quality: {quality}; sizes: typical bits per weight (tiny models come out larger)",
    )

    def notes_below() -> None:
        too_big = [f"{r.pair} {r.quant}" for r in levels if not r.fits]
        if too_big:
            click.echo(f"does not fit with {MIN_CONTEXT} tokens of context: {', '.join(too_big)}")
        for line in notes:
            click.echo(f"note: {line}")

    every_level = Rows(fitting.columns, [r.as_dict() for r in levels])
    out.emit(data, fitting, notes_below, csv=every_level)


def _quality_cell(loss: float | None, source: str) -> str:
    if loss is None:
        return "not measured"
    return f"{loss:.4f}" + ("" if source == TYPICAL_SOURCE else " (measured)")
