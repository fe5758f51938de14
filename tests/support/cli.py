"""Running the CLI in-process, and what a user's mistake must look like."""

from __future__ import annotations

from click.testing import CliRunner, Result

from ondevice.cli import cli


def invoke(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input)


def one_error_line(result: Result, *fragments: str) -> str:
    """A user's mistake: non-zero exit, one 'Error:' line that says what is wrong, no traceback."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    return errors[0]
