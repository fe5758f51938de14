"""A GGUF to another float or Q8_0 GGUF, through llama.cpp's own quantizer.

The bundled models ship quantized; dequantizing one to F16 gives a source that a quantization ladder
(and a KLD reference) can start from. llama.cpp dequantizes each tensor to F32 and writes the target
type, so this is `quantize` to a float level with requantizing allowed, and its quality is the source's.
"""

from __future__ import annotations

from ondevice.progress import ProgressFn
from ondevice.refs import resolve
from ondevice.store import Store

from .outputs import ConvertResult, OutType
from .quantize import is_quantized, quantize

__all__ = ["convert_gguf"]


def convert_gguf(
    ref: str,
    outtype: OutType | str = OutType.F16,
    *,
    name: str | None = None,
    store: Store | None = None,
    progress: ProgressFn | None = None,
) -> ConvertResult:
    """Write model `ref` (a .gguf path, bundled:NAME or store name) as `outtype` into the store;
    `progress` hears the quantizer's events (and a bundled model's assembly)."""
    outtype = OutType.parse(outtype) if isinstance(outtype, str) else outtype
    store = store or Store()
    model = resolve(ref, store, progress)
    quantized = is_quantized(model.summary)
    (result,) = quantize(
        model,
        [outtype.value],
        allow_requantize=True,
        name=name,
        store=store,
        progress=progress,
        origin=f"convert:{ref}",
    )
    notes = []
    if quantized:
        notes.append(
            f"from {model.quant}: the {outtype.name} file holds no more than its source did; it is a "
            "starting point for a ladder or a reference, not a better model"
        )
    return ConvertResult(
        ref=result.ref,
        path=result.path,
        outtype=outtype.value,
        architecture=model.summary.architecture or "",
        size_bytes=result.size_bytes,
        bits_per_weight=result.bits_per_weight,
        seconds=result.seconds,
        notes=notes,
    )
