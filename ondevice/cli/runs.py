"""ondevice runs list|show: the bench and eval runs the store keeps."""

from __future__ import annotations

import click

from ..measure.runs import find_run, list_runs
from .output import Column, Format, Output, Rows, output_options


@click.group()
def runs() -> None:
    """Saved bench and eval runs: every `ondevice bench` and `ondevice eval` keeps one (unless --no-save)."""


@runs.command("list")
@click.option("--kind", type=click.Choice(["bench", "eval"]), default=None, help="Only runs of this kind.")
@output_options(Format.TABLE, Format.JSON, Format.CSV)
def list_command(kind: str | None, out: Output) -> None:
    """Saved runs, newest first."""
    records = [
        {"id": r.id, "kind": r.kind, "created": r.created, "models": list(r.models), "path": str(r.path)}
        for r in list_runs()
        if kind is None or r.kind == kind
    ]
    table = Rows(
        [
            Column("id", "id", no_wrap=True),
            Column("kind", "kind"),
            Column("created", "created"),
            Column("models", "models", ", ".join),
        ],
        records,
        title="Saved runs",
        caption=None if records else "none yet: `ondevice bench REF` or `ondevice eval REF` keeps one",
    )
    out.emit({"runs": records}, table, csv=table)


@runs.command()
@click.argument("run_id", metavar="ID")
@output_options(Format.MD, Format.JSON, Format.CSV, json_help="Same as --format json.")
def show(run_id: str, out: Output) -> None:
    """The saved run ID (or the one run whose id starts with ID), as bench or eval printed it."""
    run = find_run(run_id)
    out.emit(run.as_dict(), csv=run.to_csv, markdown=run.to_markdown)
