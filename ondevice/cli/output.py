"""The one output path of the CLI: a command hands its data (and how to show it to a person) to an
`Output`, which prints a table, JSON or CSV as the user asked. `--json` is declared here only."""

from __future__ import annotations

import csv
import functools
import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import click
from rich.console import Console

from .common import PlainTable, stdout_console


class Format(str, Enum):
    TABLE = "table"  # for people: tables and lines
    MD = "md"  # a markdown table, as llama-bench prints by default
    JSON = "json"
    CSV = "csv"


@dataclass(frozen=True)
class Column:
    """One column of a table: its header, the row key it shows, and how a value reads to a person."""

    header: str
    key: str
    show: Callable[[Any], str] = str
    no_wrap: bool = False


@dataclass(frozen=True)
class Rows:
    """A table's worth of records: shown as a table to people, written as CSV or JSON for programs."""

    columns: Sequence[Column]
    records: Sequence[Mapping[str, Any]]
    title: str | None = None
    caption: str | None = None

    def print(self, console: Console) -> None:
        table = PlainTable(title=self.title, title_justify="left", caption=self.caption)
        for column in self.columns:
            table.add_column(column.header, no_wrap=column.no_wrap)
        for record in self.records:
            table.add_row(*(column.show(record[column.key]) for column in self.columns))
        console.print(table)

    def to_csv(self) -> str:
        """Every key of the records (not only the shown ones), raw values, one header line."""
        keys = list(dict.fromkeys(key for record in self.records for key in record)) or [
            column.key for column in self.columns
        ]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        for record in self.records:
            writer.writerow({k: _csv_value(v) for k, v in record.items()})
        return out.getvalue()


def _csv_value(value: Any) -> Any:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False)
    return value


Human = Callable[[], None] | Rows


@dataclass(frozen=True)
class Output:
    """Where a command's result goes, in the format the user chose."""

    format: Format = Format.TABLE

    @property
    def json(self) -> bool:
        return self.format is Format.JSON

    def emit(
        self,
        data: Any,
        *human: Human,
        csv: Rows | Callable[[], str] | None = None,
        markdown: Callable[[], str] | None = None,
    ) -> None:
        """Print `data` as JSON, `csv` as CSV, `markdown` as markdown, or `human` for people: tables
        (Rows) and printing functions, in order."""
        if self.format is Format.JSON:
            print_json(data)
        elif self.format is Format.CSV:
            if csv is None:
                raise click.UsageError("this command has no CSV output")
            click.echo(csv.to_csv() if isinstance(csv, Rows) else csv(), nl=False)
        elif self.format is Format.MD and markdown is not None:
            click.echo(markdown(), nl=False)
        else:
            console = stdout_console()
            for part in human:
                if isinstance(part, Rows):
                    part.print(console)
                else:
                    part()


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def output_options(*formats: Format, json_help: str = "Print JSON.") -> Callable[..., Any]:
    """--json on a command (the same flag everywhere); with `formats`, also --format (the first is the
    default, --json is short for --format json). The command receives `out: Output`."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def command(*args: Any, as_json: bool, fmt: str | None = None, **kwargs: Any) -> Any:
            chosen = Format.JSON if as_json else Format(fmt) if fmt else (formats or (Format.TABLE,))[0]
            return func(*args, out=Output(chosen), **kwargs)

        command = click.option("--json", "as_json", is_flag=True, help=json_help)(command)
        if formats:
            command = click.option(
                "--format",
                "fmt",
                type=click.Choice([f.value for f in formats]),
                default=formats[0].value,
                show_default=True,
                help="Output format.",
            )(command)
        return command

    return decorate
