"""Human-readable numbers."""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def format_bytes(n: float) -> str:
    """Human size in decimal units, as disk tools print them."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 999.95 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def format_params(n: int) -> str:
    """A parameter count as llama-bench prints it: 1.24 B, 134.52 M."""
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.2f} M"


def parse_size(text: str | int) -> int:
    """Bytes from "8G", "1.5 GB", "512M", "2GiB" or a plain number of bytes (K/M/G/T are powers of 1024)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a size (like 512M, 8G or 1.5GB)")
    number, unit = match.groups()
    return int(float(number) * 1024 ** "_kmgt".index(unit.lower() or "_"))
