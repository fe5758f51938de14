"""Model references: NAME[:QUANT] in the store, bundled:NAME, hf:ORG/REPO, or a path to a .gguf."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from . import bundled
from .errors import UnknownReferenceError
from .gguf_file import read_gguf
from .gguf_summary import GGUFSummary
from .kinds import Kind, decide_kind
from .progress import ProgressFn
from .store import Manifest, Store, describe


@dataclass(frozen=True)
class ResolvedModel:
    """A GGUF file ready to load, with what we know about it."""

    ref: str
    display_name: str
    path: Path
    kind: Kind
    kind_reason: str
    summary: GGUFSummary
    manifest: Manifest | None = None

    @property
    def quant(self) -> str:
        if self.manifest is not None:
            return self.manifest.quant
        return self.summary.file_type_name or "unknown"


def pull_bundled(name: str, store: Store, progress: ProgressFn | None = None) -> Manifest:
    """Put a bundled model into the store (once); return its manifest."""
    model = bundled.get(name)
    for entry in store.entries():
        if entry.manifest.name == model.name and entry.manifest.source == f"bundled:{model.name}":
            return entry.manifest
    bundled.part_paths(model)  # fail early and clearly when the package is missing
    quant = model.quant

    def manifest_for(summary: GGUFSummary) -> Manifest:
        manifest = describe(
            summary,
            name=model.name,
            quant=quant,
            source=f"bundled:{model.name}",
            sha256=model.sha256,
            declared_kind=model.kind,
            declared_by=f"the bundled source ({model.upstream})",
            revision=model.package,
        )
        manifest.extra = {"upstream": model.upstream}
        return manifest

    entry = store.add(
        model.name,
        quant,
        lambda partial: bundled.assemble(model, partial, progress),
        model.size,
        manifest_for,
    )
    return entry.manifest


def resolve(ref: str, store: Store | None = None, progress: ProgressFn | None = None) -> ResolvedModel:
    """Find the GGUF a reference names, validating it; pulls bundled models into the store on first use."""
    store = store or Store()
    ref = ref.strip()
    if not ref:
        raise UnknownReferenceError("empty model reference")
    if ref.startswith("bundled:"):
        manifest = pull_bundled(ref.removeprefix("bundled:"), store, progress)
        return _from_store(ref, store, manifest.name, manifest.quant)
    if ref.startswith("hf:"):
        repo = ref.removeprefix("hf:")
        for entry in store.entries():
            if entry.manifest.source.split("@")[0] == ref.split("@")[0]:
                return _from_store(ref, store, entry.manifest.name, entry.manifest.quant)
        raise UnknownReferenceError(
            f"{repo} is not in the store yet; convert it first: ondevice convert {ref}"
        )
    path = Path(ref).expanduser()
    if ref.endswith(".gguf") or path.is_file() or "/" in ref:
        return _from_path(ref, path)
    name, _, quant = ref.partition(":")
    return _from_store(ref, store, name, quant or None)


def verify(model: ResolvedModel, store: Store | None = None) -> bool:
    """Check a stored model's file against its manifest's size and sha256 (raises StoreError when it
    changed); False for a model outside the store, which has nothing to check against."""
    if model.manifest is None:
        return False
    store = store or Store()
    store.verify(store.find(model.manifest.name, model.manifest.quant))
    return True


def _from_store(ref: str, store: Store, name: str, quant: str | None) -> ResolvedModel:
    try:
        entry = store.find(name, quant)
    except UnknownReferenceError as exc:
        if name in store.names():
            raise
        known = store.names() + [f"bundled:{n}" for n in bundled.BUNDLED]
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(known)}"
        raise UnknownReferenceError(f"unknown model reference {ref!r}{hint}") from exc
    store.verify(entry, full=False)  # a replaced file is caught here; sha256 where it matters (verify)
    summary = read_gguf(entry.path)
    manifest = entry.manifest
    return ResolvedModel(
        ref=ref,
        display_name=manifest.ref,
        path=entry.path,
        kind=manifest.kind,
        kind_reason=manifest.kind_reason,
        summary=summary,
        manifest=manifest,
    )


def _from_path(ref: str, path: Path) -> ResolvedModel:
    summary = read_gguf(path)
    decision = decide_kind(summary)
    return ResolvedModel(
        ref=ref,
        display_name=path.name,
        path=path.resolve(),
        kind=decision.kind,
        kind_reason=decision.reason,
        summary=summary,
    )
