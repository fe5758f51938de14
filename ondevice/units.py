"""Human-readable numbers."""

from __future__ import annotations


def format_bytes(n: float) -> str:
    """Human size in decimal units, as disk tools print them."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 999.95 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
