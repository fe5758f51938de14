"""Human-readable numbers."""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)(b?)\s*$", re.IGNORECASE)


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


def parse_size(text: str | int, bare: str = "bytes") -> int:
    """Bytes from "8G", "1.5 GB", "512M" (powers of 1000, as sizes are printed) or "2GiB", "512MiB"
    (powers of 1024). A bare number is bytes; with `bare="refuse"` it is an error (for RAM sizes, where
    "4" is surely not 4 bytes)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a size (like 512M, 8G, 1.5GB or 2GiB)")
    number, unit, binary, _ = match.groups()
    if not unit:
        if binary or bare == "refuse":
            raise ValueError(f"{text!r} has no unit: write it like 8G, 16GB or 16GiB")
        return int(float(number))
    base = 1024 if binary else 1000
    return int(float(number) * base ** "_kmgt".index(unit.lower()))
