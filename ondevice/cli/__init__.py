"""ondevice command-line interface: thin shells over the library."""

from __future__ import annotations

import logging
import os
import signal

import click

from ..errors import OndeviceError
from ..terminal_text import visible_controls
from . import (
    bench,
    chat,
    compare,
    convert,
    doctor,
    eval,
    imatrix,
    models,
    profiles,
    quantize,
    rpc_server,
    run,
    runs,
    serve,
)
from .common import note

DEBUG_ENV = "ONDEVICE_DEBUG"


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


class OndeviceGroup(click.Group):
    """The one error boundary: a user's mistake is one line and a non-zero exit."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except OndeviceError as exc:
            if debug_enabled():
                raise
            raise click.ClickException(visible_controls(str(exc))) from None
        except KeyboardInterrupt:
            raise click.Abort() from None
        except OSError as exc:  # the machine's: a full disk, a read-only or missing folder
            if debug_enabled():
                raise
            where = f": {exc.filename}" if exc.filename else ""
            raise click.ClickException(visible_controls(f"{exc.strerror or exc}{where}")) from None
        except Exception as exc:
            if debug_enabled():
                raise
            raise click.ClickException(
                visible_controls(
                    f"internal error: {type(exc).__name__}: {exc} (run with {DEBUG_ENV}=1 for the traceback)"
                )
            ) from None


class NoteHandler(logging.Handler):
    """The library's warnings (a fallback it took, say) as one status line each on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        note(visible_controls(record.getMessage()))


def _show_library_warnings() -> None:
    logger = logging.getLogger("ondevice")
    if not any(isinstance(h, NoteHandler) for h in logger.handlers):
        logger.addHandler(NoteHandler(logging.WARNING))


@click.group(cls=OndeviceGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ondevice")
def cli() -> None:
    """Run, measure and compare quantized base and instruct models on this machine."""
    _show_library_warnings()


cli.add_command(models.models)
cli.add_command(run.run)
cli.add_command(chat.chat)
cli.add_command(compare.compare)
cli.add_command(bench.bench)
cli.add_command(eval.eval_)
cli.add_command(convert.convert)
cli.add_command(quantize.quantize)
cli.add_command(imatrix.imatrix)
cli.add_command(profiles.profiles)
cli.add_command(doctor.doctor)
cli.add_command(runs.runs)
cli.add_command(serve.serve)
cli.add_command(rpc_server.rpc_server)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    # SIGTERM unwinds like Ctrl-C: workers and partial files are cleaned up on the way out.
    signal.signal(signal.SIGTERM, _terminate)
    cli()
