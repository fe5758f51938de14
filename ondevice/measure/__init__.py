"""Measurement: speed and memory (llama-bench's method), quality against a reference
(llama-perplexity's --kl-divergence method) and instruction following (verifiable instructions)."""

from __future__ import annotations

from ..errors import OndeviceError


class MeasureError(OndeviceError):
    """A measurement cannot run as asked (settings, text, models that do not match)."""
