"""Model references: NAME[:QUANT] in the store, bundled:NAME, hf:ORG/REPO, or a path to a .gguf."""

from __future__ import annotations

import contextlib
import difflib
import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from . import bundled
from .errors import UnknownReferenceError
from .gguf_split import read_gguf_model
from .gguf_summary import GGUFSummary
from .kinds import Kind, decide_kind
from .manifest import Manifest, describe
from .progress import ProgressFn
from .quant_names import base_level, file_quant_name
from .store import Store, StoreEntry

log = logging.getLogger("ondevice.refs")


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
        return file_quant_name(self.summary.file_type_name or "unknown", self.summary.metadata)


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


Choose = Callable[[list[StoreEntry]], StoreEntry]


def resolve(
    ref: str, store: Store | None = None, progress: ProgressFn | None = None, choose: Choose | None = None
) -> ResolvedModel:
    """Find the GGUF a reference names, validating it; pulls bundled models into the store on first use.

    A store NAME with several files and no :QUANT is an error, unless `choose` picks one of them (the
    caller's default level, e.g. the best that fits in memory); the choice is said in one line."""
    store = store or Store()
    ref = ref.strip()
    if not ref:
        raise UnknownReferenceError("empty model reference")
    if ref.startswith("bundled:"):
        manifest = pull_bundled(ref.removeprefix("bundled:"), store, progress)
        return _from_store(ref, store, manifest.name, manifest.quant)
    if ref.startswith("hf:"):
        return _from_hub_ref(ref, store, choose)
    path = Path(ref).expanduser()
    if ref.endswith(".gguf") or path.is_file() or "/" in ref:
        return _from_path(ref, path)
    name, _, quant = ref.partition(":")
    return _from_store(ref, store, name, quant or None, choose)


def in_store(ref: str, store: Store | None = None) -> bool:
    """Whether `bundled:NAME` has been pulled into the store already."""
    name = ref.removeprefix("bundled:")
    return any(e.manifest.source == f"bundled:{name}" for e in (store or Store()).entries())


@contextlib.contextmanager
def bundled_preview(ref: str, progress: ProgressFn | None = None) -> Iterator[ResolvedModel]:
    """A bundled model read where its package installed it, without adding it to the store: a model
    that ships in parts is assembled into a temporary file that is gone afterwards."""
    model = bundled.get(ref.removeprefix("bundled:"))
    paths = bundled.part_paths(model)
    with contextlib.ExitStack() as stack:
        if len(paths) == 1:
            path = paths[0]
        else:
            path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ondevice-"))) / "model.gguf"
            bundled.assemble(model, path, progress)
        found = _from_path(ref, path)
        yield replace(
            found,
            display_name=ref,
            kind=model.kind,
            kind_reason=f"declared by the bundled source ({model.upstream})",
        )


def verify(model: ResolvedModel, store: Store | None = None) -> bool:
    """Check a stored model's file against its manifest's size and sha256 (raises StoreError when it
    changed); False for a model outside the store, which has nothing to check against."""
    if model.manifest is None:
        return False
    store = store or Store()
    store.verify(store.find(model.manifest.name, model.manifest.quant))
    return True


def _from_hub_ref(ref: str, store: Store, choose: Choose | None) -> ResolvedModel:
    """hf:ORG/REPO[@REV][:QUANT]: what the store holds from that repo (converted or pulled), the
    level named, else the only one, else the one `choose` picks."""
    body = ref.removeprefix("hf:")
    repo, _, quant = body.partition(":")
    repo = repo.split("@")[0]
    found = [e for e in store.entries() if e.manifest.source.removeprefix("hf:").split("@")[0] == repo]
    if quant:
        found = _of_level(found, quant)
    if not found:
        have = f" at {quant.upper()}" if quant else ""
        raise UnknownReferenceError(
            f"{repo}{have} is not in the store yet: `ondevice models pull {ref}` (a repo of GGUF files) "
            f"or `ondevice convert hf:{repo}` (a safetensors checkpoint)"
        )
    if len(found) > 1 and choose is not None:
        return _resolved(ref, store, _chosen(ref, found, choose))
    if len(found) > 1:
        have = ", ".join(e.manifest.ref for e in found)
        raise UnknownReferenceError(
            f"{ref} is in the store at several levels; name one as {ref}:QUANT: {have}"
        )
    return _resolved(ref, store, found[0])


def _of_level(entries: list[StoreEntry], quant: str) -> list[StoreEntry]:
    """The entries named `quant`; failing that, for a bare level (Q4_K_M), its tagged files
    (Q4_K_M-imat): a file pulled from a repo whose publisher used an importance matrix is the one a
    user asking for the repo's Q4_K_M means. A tagged name never falls back to the plain file."""
    exact = [e for e in entries if e.manifest.quant.lower() == quant.lower()]
    if exact or base_level(quant) != quant:
        return exact
    return [e for e in entries if base_level(e.manifest.quant).lower() == quant.lower()]


def _chosen(label: str, entries: list[StoreEntry], choose: Choose) -> StoreEntry:
    """The entry `choose` picks of one model's levels, said in one line."""
    entry = choose(entries)
    others = ", ".join(e.manifest.quant for e in entries if e is not entry)
    log.warning(
        "%s: using %s (also in the store: %s; name one as %s:QUANT)", label, entry.manifest.ref, others, label
    )
    return entry


def _from_store(
    ref: str, store: Store, name: str, quant: str | None, choose: Choose | None = None
) -> ResolvedModel:
    if choose is not None and quant is None:  # only then are all of NAME's levels worth reading
        candidates = [e for e in store.entries() if e.manifest.name == name]
        if len(candidates) > 1:
            return _resolved(ref, store, _chosen(name, candidates, choose))
    try:
        entry = store.find(name, quant)
    except UnknownReferenceError as exc:
        if name in store.names():
            files = [e for e in store.entries() if e.manifest.name == name]
            tagged = _of_level(files, quant) if quant else []
            if len(tagged) != 1:  # none, or several (-imat and -custom): the store's error names them
                raise
            log.info("%s: using %s, the only %s file of %s", ref, tagged[0].manifest.ref, quant, name)
            return _resolved(ref, store, tagged[0])
        known = store.names() + [f"bundled:{n}" for n in bundled.BUNDLED]
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(known)}"
        raise UnknownReferenceError(f"unknown model reference {ref!r}{hint}") from exc
    return _resolved(ref, store, entry)


def _resolved(ref: str, store: Store, entry: StoreEntry) -> ResolvedModel:
    store.verify(entry, full=False)  # a replaced file is caught here; sha256 where it matters (verify)
    summary = read_gguf_model(entry.path)
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
    summary = read_gguf_model(path)
    decision = decide_kind(summary)
    return ResolvedModel(
        ref=ref,
        display_name=path.name,
        path=path.resolve(),
        kind=decision.kind,
        kind_reason=decision.reason,
        summary=summary,
    )
