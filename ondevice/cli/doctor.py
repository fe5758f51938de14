"""ondevice doctor: what this machine is, which profile it gets and why, and what would help."""

from __future__ import annotations

from typing import Any

import click

from ..planning import hardware
from ..planning.hardware import Hardware
from ..planning.hardware_profiles import APPLIED_FIELDS, choose_profile, load_hardware_profile
from ..runtime import build, extra_bufts
from ..runtime.protocol import ExtraBufts
from ..units import format_bytes
from .common import PlainTable, stdout_console
from .output import Output, output_options


def diagnosis(hw: Hardware) -> dict[str, Any]:
    """The machine, the profile picked for it with the reason, and advice, as plain data."""
    selection = choose_profile(hw)
    profile = load_hardware_profile(selection.profile)
    cpu_kernels = extra_bufts.status(ExtraBufts(profile.extra_bufts))
    info = build.build_info()
    rpc = {"supported": info.rpc, "rebuild": None if info.rpc else build.RPC_REBUILD}
    return {
        "hardware": hw.as_dict(),
        "profile": profile.as_dict(),
        "reason": selection.reason,
        "extra_bufts": cpu_kernels,
        "rpc": rpc,
        "advice": list(selection.advice),
    }


def print_diagnosis(data: dict[str, Any]) -> None:
    hw, profile = data["hardware"], data["profile"]
    console = stdout_console()
    table = PlainTable(show_header=False, box=None, title="This machine", title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("system", f"{hw['os']} {hw['os_version']} ({hw['machine']})")
    table.add_row(
        "CPU", f"{hw['cpu_model']}: {hw['physical_cores']} physical cores, {hw['logical_cores']} logical"
    )
    table.add_row("SIMD", ", ".join(hw["simd"]) or "none detected")
    table.add_row(
        "memory",
        f"{format_bytes(hw['total_ram_bytes'])} total, {format_bytes(hw['available_ram_bytes'])} available",
    )
    if hw["apple_silicon"]:
        table.add_row("Apple Silicon", "yes, Metal GPU (unified memory)")
    for gpu in hw["gpus"]:
        driver = f", driver {gpu['driver']}" if gpu["driver"] else ""
        table.add_row("GPU", f"{gpu['name']}: {format_bytes(gpu['memory_bytes'])}{driver}")
    if not hw["gpus"] and not hw["apple_silicon"]:
        table.add_row("GPU", "none found (no NVIDIA GPU, not Apple Silicon)")
    table.add_row(
        "GPU offload", "this llama.cpp build can offload" if hw["gpu_offload_supported"] else "CPU-only build"
    )
    table.add_row("llama.cpp", hw["build_info"] or "not importable")
    cpu_kernels = data["extra_bufts"]
    table.add_row(
        "extra buffer types", f"{cpu_kernels['effective']} ({cpu_kernels['setting']}): {cpu_kernels['why']}"
    )
    rpc = data["rpc"]
    table.add_row(
        "RPC",
        "built in: `ondevice rpc-server` lends this machine, --rpc uses others"
        if rpc["supported"]
        else f"not in this build; rebuild llama-cpp-python: {rpc['rebuild']}",
    )
    console.print(table)
    click.echo()
    click.echo(f"Profile: {profile['name']} ({profile['origin']}, {profile['path']})")
    click.echo(f"  why: {data['reason']}")
    settings = ", ".join(f"{k} {profile[k]}{_MEANING.get((k, profile[k]), '')}" for k in APPLIED_FIELDS)
    click.echo(f"  loads with: {settings}; keeps {profile['memory_headroom']} of RAM free")
    if data["advice"]:
        click.echo()
        for line in data["advice"]:
            click.echo(f"To do: {line}")


# Values whose meaning is not the number itself, as the profile files document them.
_MEANING = {("threads", 0): " (one per physical core)", ("gpu_layers", -1): " (all)"}


@click.command()
@output_options()
def doctor(out: Output) -> None:
    """What this machine can run, the hardware profile it gets and why, and what to install or rebuild."""
    data = diagnosis(hardware.detect_hardware())
    out.emit(data, lambda: print_diagnosis(data))
