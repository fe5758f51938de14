"""The model store: GGUF files with a manifest each, under $ONDEVICE_HOME/models/NAME/.

Layout: models/NAME/QUANT.gguf and models/NAME/QUANT.json. A reference NAME:QUANT picks one file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import locations
from .atomic import atomic_path, check_free_space, remove_stale_partials, write_text_atomic
from .errors import StoreError, UnknownReferenceError
from .gguf_file import read_gguf
from .gguf_summary import GGUFSummary
from .kinds import Kind, KindDecision, decide_kind
from .records import RecordError, from_dict

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass
class Manifest:
    """What the store knows about one GGUF file. Written next to it as QUANT.json."""

    name: str
    quant: str
    file: str  # file name inside the model's directory
    source: str  # where it came from: bundled:NAME, hf:ORG/REPO, a path, or quantize:NAME:QUANT
    sha256: str
    architecture: str | None
    kind: Kind
    kind_reason: str
    parameter_count: int
    size_bytes: int
    bits_per_weight: float
    context_length: int | None
    has_chat_template: bool
    revision: str | None = None
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.quant}"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, origin: Path) -> Manifest:
        """Parse and check a manifest; its name, quant and file must match where it lies."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StoreError(f"{origin}: unreadable manifest ({exc})") from None
        if not isinstance(data, dict):
            raise StoreError(f"{origin}: unreadable manifest (not a JSON object)")
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise StoreError(f"{origin}: unknown manifest keys {sorted(unknown)}")
        try:
            manifest = from_dict(cls, data, "manifest")
        except RecordError as exc:
            raise StoreError(f"{origin}: unreadable manifest ({exc})") from None
        if manifest.size_bytes < 0 or not re.fullmatch(r"([0-9a-f]{64})?", manifest.sha256):
            raise StoreError(f"{origin}: the manifest's size or sha256 is not valid")
        return manifest


@dataclass(frozen=True)
class StoreEntry:
    manifest: Manifest
    path: Path  # the GGUF file

    @property
    def manifest_path(self) -> Path:
        return self.path.with_suffix(".json")


@dataclass(frozen=True)
class BrokenEntry:
    """A manifest the store cannot use, or a GGUF without one: listed and removable, never loaded."""

    name: str  # the model's directory
    quant: str  # the file stem the manifest or GGUF has
    directory: Path
    reason: str

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.quant}"

    def as_dict(self) -> dict[str, str]:
        return {"ref": self.ref, "directory": str(self.directory), "reason": self.reason}


def check_name(name: str, what: str = "model name") -> str:
    if not _NAME.match(name):
        raise StoreError(f"invalid {what} {name!r}: use letters, digits, '.', '_' and '-'")
    return name


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(4 << 20):
            digest.update(block)
    return digest.hexdigest()


def describe(
    summary: GGUFSummary,
    *,
    name: str,
    quant: str | None,
    source: str,
    sha256: str,
    declared_kind: Kind | None = None,
    declared_by: str = "",
    revision: str | None = None,
) -> Manifest:
    """A manifest for a validated GGUF file."""
    decision: KindDecision = decide_kind(summary, declared_kind, declared_by)
    return Manifest(
        name=name,
        quant=quant or summary.file_type_name or "unknown",
        file="",
        source=source,
        sha256=sha256,
        architecture=summary.architecture,
        kind=decision.kind,
        kind_reason=decision.reason,
        parameter_count=summary.parameter_count,
        size_bytes=summary.file_size,
        bits_per_weight=round(summary.bits_per_weight, 3),
        context_length=summary.context_length,
        has_chat_template=bool(summary.chat_template),
        revision=revision,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )


class Store:
    """GGUF files and manifests under one root directory."""

    def __init__(self, root: Path | None = None) -> None:
        self.models = (root or locations.home()) / "models"

    def model_dir(self, name: str) -> Path:
        return self.models / check_name(name)

    def scan(self) -> tuple[list[StoreEntry], list[BrokenEntry]]:
        """Every usable entry, and every broken one (a bad manifest affects only itself)."""
        found: list[StoreEntry] = []
        broken: list[BrokenEntry] = []
        if not self.models.is_dir():
            return found, broken
        for directory in sorted(p for p in self.models.iterdir() if p.is_dir() and not p.is_symlink()):
            if not _NAME.match(directory.name):
                continue  # not a directory the store made
            stems = {
                p.stem for p in directory.iterdir() if p.suffix in (".json", ".gguf") and _NAME.match(p.stem)
            }
            for stem in sorted(stems):
                try:
                    found.append(self._entry(directory, stem))
                except StoreError as exc:
                    broken.append(BrokenEntry(directory.name, stem, directory, str(exc)))
        return found, broken

    def _entry(self, directory: Path, stem: str) -> StoreEntry:
        manifest_path, gguf = directory / f"{stem}.json", directory / f"{stem}.gguf"
        if not manifest_path.is_file():
            raise StoreError(f"{gguf} has no manifest (an interrupted write?)")
        try:
            text = manifest_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise StoreError(f"{manifest_path}: unreadable manifest ({exc})") from None
        manifest = Manifest.from_json(text, manifest_path)
        if (manifest.name, manifest.quant, manifest.file) != (directory.name, stem, gguf.name):
            raise StoreError(
                f"{manifest_path}: the manifest names {manifest.name}:{manifest.quant} in "
                f"{manifest.file!r}, not the {gguf.name} beside it"
            )
        if gguf.is_symlink() or not gguf.is_file():
            raise StoreError(f"{gguf} is missing (or not a regular file)")
        if gguf.resolve().parent != directory.resolve():
            raise StoreError(f"{gguf} leads outside its model's directory")
        return StoreEntry(manifest, gguf)

    def entries(self) -> list[StoreEntry]:
        return self.scan()[0]

    def verify(self, entry: StoreEntry, full: bool = True) -> None:
        """Raise StoreError if the file is no longer the one stored: its size, and with `full` its
        sha256, against the manifest."""
        size = entry.path.stat().st_size
        if size != entry.manifest.size_bytes:
            raise StoreError(
                f"{entry.manifest.ref} changed since it was stored: {entry.path} is {size:,} bytes, the "
                f"manifest says {entry.manifest.size_bytes:,}; pull or convert it again, or remove it"
            )
        if full:
            if not entry.manifest.sha256:
                raise StoreError(f"{entry.manifest.ref} has no sha256 in its manifest to check against")
            digest = sha256_file(entry.path)
            if digest != entry.manifest.sha256:
                raise StoreError(
                    f"{entry.manifest.ref} changed since it was stored: its sha256 is {digest[:16]}…, the "
                    f"manifest says {entry.manifest.sha256[:16]}…; pull or convert it again, or remove it"
                )

    def broken(self) -> list[BrokenEntry]:
        return self.scan()[1]

    def names(self) -> list[str]:
        return sorted({e.manifest.name for e in self.entries()})

    def find(self, name: str, quant: str | None = None) -> StoreEntry:
        candidates = [e for e in self.entries() if e.manifest.name == name]
        if not candidates:
            raise UnknownReferenceError(f"no model named {name!r} in the store ({self.models})")
        if quant is not None:
            for entry in candidates:
                if entry.manifest.quant.lower() == quant.lower():
                    return entry
            have = ", ".join(e.manifest.quant for e in candidates)
            raise UnknownReferenceError(f"{name} has no {quant} file; it has: {have}")
        if len(candidates) > 1:
            have = ", ".join(e.manifest.ref for e in candidates)
            raise UnknownReferenceError(f"{name} has several files; name one of: {have}")
        return candidates[0]

    def add(
        self,
        name: str,
        quant: str,
        write: Callable[[Path], None],
        expected_size: int,
        manifest_for: Callable[[GGUFSummary], Manifest],
    ) -> StoreEntry:
        """Write a GGUF through `write(partial_path)`, validate it, then publish it and its manifest.

        Under the model's lock; the manifest is written before the GGUF is renamed into place, so a
        failure (disk full, a kill) leaves either nothing new or a GGUF listed as broken.
        """
        directory = self.model_dir(name)
        check_name(quant, "quantization name")
        final = directory / f"{quant}.gguf"
        created = not directory.exists()
        directory.mkdir(parents=True, exist_ok=True)
        try:
            with self.lock(name):
                remove_stale_partials(directory)
                replaced = final.stat().st_size if final.is_file() else 0
                check_free_space(directory, expected_size - replaced, f"adding {name}:{quant}")
                with atomic_path(final) as partial:
                    write(partial)
                    summary = read_gguf(partial)
                    manifest = manifest_for(dataclasses.replace(summary, path=final))
                    manifest.name, manifest.quant, manifest.file = name, quant, final.name
                    write_text_atomic(directory / f"{quant}.json", manifest.to_json())
        except BaseException:
            if created:
                with contextlib.suppress(OSError):
                    directory.rmdir()  # a failed first write leaves no empty model behind
            raise
        return StoreEntry(manifest, final)

    def sweep(self) -> list[Path]:
        """Delete what killed writers left (partial files whose process is gone) and model folders
        left empty; return what was removed. Files of running writers are kept."""
        removed: list[Path] = []
        if not self.models.is_dir():
            return removed
        for directory in self.models.iterdir():
            if directory.is_dir() and not directory.is_symlink() and _NAME.match(directory.name):
                removed += remove_stale_partials(directory)
                with contextlib.suppress(OSError):  # not empty: a model, or a live writer's partial
                    directory.rmdir()
                    removed.append(directory)
        return removed

    def remove(self, name: str, quant: str | None = None) -> list[Path]:
        """Delete one file (NAME:QUANT) or every file of a model (NAME), broken ones included, with their
        manifests; return the GGUF paths removed (a manifest's where there was no GGUF). Only files the
        store itself names inside the model's directory are touched."""
        directory = self.model_dir(name)
        if quant is not None:
            check_name(quant, "quantization name")
        swept = [p for p in self.sweep() if p == directory or p.parent == directory]
        entries, broken = self.scan()
        stems = [e.manifest.quant for e in entries if e.manifest.name == name]
        stems += [b.quant for b in broken if b.name == name]
        if quant is not None:
            matching = [s for s in stems if s.lower() == quant.lower()]
            if not matching:
                if not stems:
                    raise UnknownReferenceError(f"no model named {name!r} in the store ({self.models})")
                raise UnknownReferenceError(f"{name} has no {quant} file; it has: {', '.join(stems)}")
            stems = matching
        if not stems:
            if swept:  # only a killed writer's leftovers were there
                return [p for p in swept if p != directory]
            raise UnknownReferenceError(f"no model named {name!r} in the store ({self.models})")
        removed = []
        with self.lock(name, wait=False):
            for stem in stems:
                files = [
                    p
                    for p in (directory / f"{stem}.gguf", directory / f"{stem}.json")
                    if p.is_symlink() or p.exists()
                ]
                for path in files:
                    path.unlink()  # a link is removed, never what it points to
                if files:
                    removed.append(files[0])  # the GGUF, or the manifest of a broken entry without one
            with contextlib.suppress(OSError):  # still holds other files, or a live writer's partial
                directory.rmdir()
        return removed

    @contextlib.contextmanager
    def lock(self, name: str, wait: bool = True) -> Iterator[None]:
        """Hold the model's write lock: writers of one model take turns, so a manifest always
        describes the file beside it. Without `wait`, a held lock is a StoreError at once."""
        locks = self.models / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        with open(locks / f"{check_name(name)}.lock", "a+b") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                raise StoreError(
                    f"{name} is being written by another ondevice process; try again when it has finished"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
