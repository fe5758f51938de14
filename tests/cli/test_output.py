"""The CLI's one output path: --json, --format and the table/CSV/JSON sink."""

from __future__ import annotations

import csv
import io
import json

import click
from click.testing import CliRunner

from ondevice.cli import cli
from ondevice.cli.output import Column, Format, Output, Rows, output_options

RECORDS = [{"name": "a,b", "size": 1500, "tags": ["x"]}, {"name": "c", "size": 2, "tags": []}]
TABLE = Rows([Column("name", "name"), Column("size", "size", lambda n: f"{n} B")], RECORDS, title="things")


@click.command()
@output_options(Format.TABLE, Format.JSON, Format.CSV)
def things(out: Output) -> None:
    out.emit({"things": RECORDS}, TABLE, lambda: click.echo("after the table"), csv=TABLE)


@click.command()
@output_options()
def only_json(out: Output) -> None:
    out.emit({"ok": True}, lambda: click.echo("ok"))


def test_one_command_prints_a_table_json_or_csv():
    runner = CliRunner()
    table = runner.invoke(things, [], catch_exceptions=False).output
    assert "things" in table and "1500 B" in table and table.rstrip().endswith("after the table")
    assert json.loads(runner.invoke(things, ["--json"]).output) == {"things": RECORDS}
    assert json.loads(runner.invoke(things, ["--format", "json"]).output) == {"things": RECORDS}
    rows = list(csv.DictReader(io.StringIO(runner.invoke(things, ["--format", "csv"]).output)))
    assert rows[0] == {"name": "a,b", "size": "1500", "tags": '["x"]'}
    assert rows[1] == {"name": "c", "size": "2", "tags": "[]"}


def test_a_command_without_csv_offers_only_json():
    runner = CliRunner()
    assert runner.invoke(only_json, []).output == "ok\n"
    assert json.loads(runner.invoke(only_json, ["--json"]).output) == {"ok": True}
    assert runner.invoke(only_json, ["--format", "csv"]).exit_code == 2


def test_every_command_declares_json_the_same_way():
    def commands(group: click.Group, prefix: str = ""):
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                yield from commands(command, f"{prefix}{name} ")
            else:
                yield f"{prefix}{name}", command

    with_json = {}
    for name, command in commands(cli):
        for param in command.params:
            if "--json" in getattr(param, "opts", ()):
                with_json[name] = param
    assert {"models list", "models info", "bench", "eval", "run", "compare", "doctor"} <= set(with_json)
    for name, param in with_json.items():
        assert param.name == "as_json" and param.is_flag, name


def test_empty_rows_still_give_a_csv_header():
    empty = Rows([Column("model", "ref"), Column("ok", "ok")], [])
    assert empty.to_csv() == "ref,ok\n"
