"""ondevice rpc-server: lend this machine to a model loaded elsewhere with --rpc."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..hosts import is_loopback
from ..runtime.rpc_client import DEFAULT_PORT
from ..runtime.rpc_server import SECURITY_WARNING, RpcServer, RpcServerError, ServerConfig
from ..units import format_bytes, parse_size
from .common import note
from .options import MAX_THREADS


def _memory(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        size = parse_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--mem") from None
    if size <= 0:
        raise click.BadParameter("offer more than 0 bytes", param_hint="--mem")
    return size


@click.command("rpc-server")
@click.option("-H", "--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "-p",
    "--port",
    type=click.IntRange(1, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Port to listen on (llama.cpp's rpc-server default).",
)
@click.option(
    "-t", "--threads", type=click.IntRange(1, MAX_THREADS), default=1, show_default=True, help="CPU threads."
)
@click.option(
    "-m",
    "--mem",
    default=None,
    metavar="SIZE",
    help="Memory to offer clients, e.g. 4G or 6GiB; they split layers by it [default: what is free].",
)
@click.option(
    "-c",
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep big tensors here so a model's next load skips sending them (llama.cpp's rpc-server -c).",
)
@click.option(
    "--allow-network",
    is_flag=True,
    help="Listen on an address other machines can reach (read the security note it prints).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON status line once serving.")
def rpc_server(
    host: str,
    port: int,
    threads: int,
    mem: str | None,
    cache_dir: Path | None,
    allow_network: bool,
    as_json: bool,
) -> None:
    """Run llama.cpp's RPC server: another machine's `ondevice run ... --rpc HOST:PORT` puts layers
    of its model here, in this machine's memory, computed by its CPU. Ctrl-C stops it.

    It listens on 127.0.0.1 (this machine only) unless --host names another address and
    --allow-network says you mean it: the server has no authentication and no encryption.
    """
    if not is_loopback(host):
        if not allow_network:
            raise click.UsageError(
                f"--host {host} lets other machines reach this server, which has no authentication: "
                "add --allow-network if this network is trusted"
            )
        note("warning: " + SECURITY_WARNING.format(where=f"{host}:{port}"))
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
    config = ServerConfig(host, port, threads, _memory(mem), str(cache_dir) if cache_dir else None)
    server = RpcServer(config)
    try:
        info = server.info
        status = {
            "endpoint": str(config.endpoint),
            "host": host,
            "port": port,
            "threads": threads,
            "memory_bytes": info.total_bytes[0],
            "free_bytes": info.free_bytes[0],
            "backend": "CPU",
            "protocol": ".".join(map(str, info.version)),
            "cache_dir": config.cache_dir,
            "pid": server.pid,
        }
        if as_json:
            click.echo(json.dumps(status), nl=True)
        else:
            note(
                f"RPC server on {config.endpoint}: CPU, {threads} thread(s), offering "
                f"{format_bytes(info.free_bytes[0])} (protocol v{status['protocol']}); "
                f"use it with --rpc {config.endpoint}; Ctrl-C stops"
            )
        code = server.wait()
        raise RpcServerError(f"the RPC server stopped (exit status {code}): {server.log_tail()}")
    except KeyboardInterrupt:
        if not as_json:
            note("stopped")
    finally:
        server.stop()
