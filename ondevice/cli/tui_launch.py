"""Builds the terminal UI from resolved models: the CLI side of `ondevice compare`."""

from __future__ import annotations

from .. import bundled
from ..live import ModelSpec
from ..planning.plan import require_fit_now
from ..refs import ResolvedModel, resolve
from ..runtime.protocol import GenerationParams, LoadOptions
from ..store import Store
from ..tui.app import OndeviceApp
from ..tui.picker import Choice
from ..units import format_bytes


def model_choices() -> list[Choice]:
    """Everything the picker offers: the store's files, then bundled models not pulled yet."""
    entries = Store().entries()
    choices = [
        Choice(
            e.manifest.ref,
            f"{e.manifest.kind.value} · {e.manifest.quant} · {format_bytes(e.manifest.size_bytes)}",
            _aliases(e.manifest.source),
        )
        for e in entries
    ]
    pulled = {e.manifest.source for e in entries}
    for model in bundled.BUNDLED.values():
        if f"bundled:{model.name}" not in pulled:
            choices.append(
                Choice(
                    f"bundled:{model.name}",
                    f"{model.kind.value} · {model.quant} · {format_bytes(model.size)}",
                )
            )
    return choices


def _aliases(source: str) -> tuple[str, ...]:
    """The references that name a stored file by where it came from: `bundled:NAME`, `hf:ORG/REPO`."""
    if source.startswith(("bundled:", "hf:")):
        return tuple(dict.fromkeys((source, source.split("@")[0])))
    return ()


def open_checked(ref: str, options: LoadOptions) -> ModelSpec:
    """A model the picker adds: resolved, and refused with the numbers if it will not fit next to the
    models already loaded."""
    model = resolve(ref)
    require_fit_now(model.display_name, model.summary, options, "drop a model from the compare first")
    return ModelSpec.from_resolved(model, options)


def build_app(
    models: list[ResolvedModel], params: GenerationParams, options: LoadOptions, system: str | None
) -> OndeviceApp:
    return OndeviceApp(
        [ModelSpec.from_resolved(m, options) for m in models],
        defaults=params,
        system=system,
        choices=model_choices,
        open_spec=lambda ref: open_checked(ref, options),
        options=options,  # the bench screen measures with the session's profile
    )


def launch_compare(
    models: list[ResolvedModel], params: GenerationParams, options: LoadOptions, system: str | None
) -> None:
    build_app(models, params, options, system).run()
