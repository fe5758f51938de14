"""The model store: GGUF files with a manifest each, under $ONDEVICE_HOME/models/NAME/.

Layout: models/NAME/QUANT.gguf and models/NAME/QUANT.json. A reference NAME:QUANT picks one file.
A model split in shards (llama.cpp's gguf-split) keeps them together: QUANT-00001-of-0000N.gguf ...
beside one QUANT.json, whose `file` names the first shard (the one llama.cpp opens) and whose `shards`
lists every shard with its size and sha256; they are verified and removed together.
Importance matrices computed from a file are cached beside it as QUANT.KEY.imatrix (ondevice.imatrix):
not entries of their own, and removed with their source.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import locations
from .atomic import atomic_path, check_free_space, remove_stale_partials, write_text_atomic
from .errors import StoreError, UnknownReferenceError
from .gguf_file import read_gguf
from .gguf_split import SPLIT_NAME, combine_shards, split_name
from .gguf_summary import GGUFSummary
from .manifest import STORE_NAME, Manifest, check_name, sha256_file

IMATRIX_SUFFIX = ".imatrix"
IMATRIX_KEY_DIGITS = 32  # hex digits of a cached matrix's key (ondevice.imatrix.cache_key)


@dataclass(frozen=True)
class StoreEntry:
    manifest: Manifest
    path: Path  # the GGUF file

    @property
    def manifest_path(self) -> Path:
        return self.path.with_name(f"{self.manifest.quant}.json")

    @property
    def paths(self) -> list[Path]:
        """Every file of the model: the GGUF, or each shard of a split one, first shard first."""
        return [self.path.with_name(s.file) for s in self.manifest.shards] or [self.path]


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
            if not STORE_NAME.match(directory.name):
                continue  # not a directory the store made
            stems = {
                _owner_stem(p.name)
                for p in directory.iterdir()
                if p.suffix in (".json", ".gguf") and STORE_NAME.match(p.stem)
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
            if not gguf.exists():  # shards only
                raise StoreError(
                    f"{directory / stem}-*-of-*.gguf shards have no manifest (an interrupted write?)"
                )
            raise StoreError(f"{gguf} has no manifest (an interrupted write?)")
        try:
            text = manifest_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise StoreError(f"{manifest_path}: unreadable manifest ({exc})") from None
        manifest = Manifest.from_json(text, manifest_path)
        if manifest.shards:  # from_json checked that the names are QUANT-0000k-of-0000n.gguf
            gguf = directory / manifest.file
        if (manifest.name, manifest.quant, manifest.file) != (directory.name, stem, gguf.name):
            raise StoreError(
                f"{manifest_path}: the manifest names {manifest.name}:{manifest.quant} in "
                f"{manifest.file!r}, not the {gguf.name} beside it"
            )
        entry = StoreEntry(manifest, gguf)
        for path in entry.paths:
            if path.is_symlink() or not path.is_file():
                raise StoreError(f"{path} is missing (or not a regular file)")
            if path.resolve().parent != directory.resolve():
                raise StoreError(f"{path} leads outside its model's directory")
        return entry

    def entries(self) -> list[StoreEntry]:
        return self.scan()[0]

    def verify(self, entry: StoreEntry, full: bool = True) -> None:
        """Raise StoreError if the file is no longer the one stored: its size, and with `full` its
        sha256, against the manifest."""
        manifest = entry.manifest
        files = [(entry.path.with_name(s.file), s.size_bytes, s.sha256) for s in manifest.shards] or [
            (entry.path, manifest.size_bytes, manifest.sha256)
        ]
        for path, expected_size, _sha in files:
            size = path.stat().st_size
            if size != expected_size:
                raise StoreError(
                    f"{manifest.ref} changed since it was stored: {path} is {size:,} bytes, the "
                    f"manifest says {expected_size:,}; pull or convert it again, or remove it"
                )
        if not full:
            return
        for path, _size, expected_sha in files:
            if not expected_sha:
                raise StoreError(f"{manifest.ref} has no sha256 in its manifest to check against")
            digest = sha256_file(path)
            if digest != expected_sha:
                whose = f"{path.name}'s" if manifest.shards else "its"
                raise StoreError(
                    f"{manifest.ref} changed since it was stored: {whose} sha256 is {digest[:16]}…, the "
                    f"manifest says {expected_sha[:16]}…; pull or convert it again, or remove it"
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
        return self._publish(name, quant, [write], expected_size, manifest_for)

    def add_split(
        self,
        name: str,
        quant: str,
        writes: Sequence[Callable[[Path], None]],
        expected_size: int,
        manifest_for: Callable[[GGUFSummary], Manifest],
    ) -> StoreEntry:
        """`add` for a model split in shards: `writes[k]` writes shard k+1 to the path it is given.

        Every shard is written and validated (one summary for all of them) before any is renamed into
        place as QUANT-0000k-of-0000n.gguf; `manifest_for` must fill `shards` with each one's sha256 and
        size, in order (the store sets their file names)."""
        if len(writes) < 2:
            raise StoreError(f"a split model has at least two shards, not {len(writes)}")
        return self._publish(name, quant, writes, expected_size, manifest_for)

    def _publish(
        self,
        name: str,
        quant: str,
        writes: Sequence[Callable[[Path], None]],
        expected_size: int,
        manifest_for: Callable[[GGUFSummary], Manifest],
    ) -> StoreEntry:
        directory = self.model_dir(name)
        check_name(quant, "quantization name")
        n = len(writes)
        names = [f"{quant}.gguf"] if n == 1 else [split_name(quant, i, n) for i in range(1, n + 1)]
        finals = [directory / f for f in names]
        created = not directory.exists()
        directory.mkdir(parents=True, exist_ok=True)
        try:
            with self.lock(name):
                remove_stale_partials(directory)
                replaced = sum(p.stat().st_size for p in _model_files(directory, quant) if p.is_file())
                check_free_space(directory, expected_size - replaced, f"adding {name}:{quant}")
                with contextlib.ExitStack() as stack:  # renames in reverse order on success, else deletes
                    partials = [stack.enter_context(atomic_path(final)) for final in finals]
                    for write, partial in zip(writes, partials, strict=True):
                        write(partial)
                    shards = [read_gguf(partial) for partial in partials]
                    summary = shards[0] if n == 1 else combine_shards(shards)
                    manifest = manifest_for(dataclasses.replace(summary, path=finals[0]))
                    manifest.name, manifest.quant, manifest.file = name, quant, finals[0].name
                    if n > 1:
                        if len(manifest.shards) != n:
                            raise StoreError(
                                f"the manifest of {name}:{quant} lists {len(manifest.shards)} shards, not {n}"
                            )
                        for shard, final in zip(manifest.shards, finals, strict=True):
                            shard.file = final.name
                        Manifest.from_json(manifest.to_json(), directory / f"{quant}.json")  # consistent
                    else:
                        manifest.shards = []
                    # What this write replaces: an old single file or old shards of another split.
                    for old in _model_files(directory, quant):
                        if old not in finals:
                            old.unlink()
                    write_text_atomic(directory / f"{quant}.json", manifest.to_json())
        except BaseException:
            if created:
                with contextlib.suppress(OSError):
                    directory.rmdir()  # a failed first write leaves no empty model behind
            raise
        return StoreEntry(manifest, finals[0])

    def sweep(self) -> list[Path]:
        """Delete what killed writers left (partial files whose process is gone) and model folders
        left empty; return what was removed. Files of running writers are kept."""
        removed: list[Path] = []
        if not self.models.is_dir():
            return removed
        for directory in self.models.iterdir():
            if directory.is_dir() and not directory.is_symlink() and STORE_NAME.match(directory.name):
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
                    *_model_files(directory, stem),
                    directory / f"{stem}.json",
                    *_imatrix_caches(directory, stem),
                ]
                files = [p for p in files if p.is_symlink() or p.exists()]
                for path in files:
                    path.unlink()  # a link is removed, never what it points to
                removed += [p for p in files if p.suffix == ".gguf"] or files[:1]  # or a lone manifest
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


def _owner_stem(file_name: str) -> str:
    """The entry a file in a model's directory belongs to: QUANT for QUANT.gguf, QUANT.json and the
    shards QUANT-0000k-of-0000n.gguf."""
    match = SPLIT_NAME.match(file_name)
    return match["prefix"] if match else file_name.rsplit(".", 1)[0]


def _model_files(directory: Path, quant: str) -> list[Path]:
    """The GGUF files of entry `quant` that are there: QUANT.gguf and shards QUANT-0000k-of-0000n.gguf
    (by exact name in the directory itself; links are listed, never followed)."""
    found = [directory / f"{quant}.gguf"]
    if directory.is_dir():
        found += sorted(
            p
            for p in directory.iterdir()
            if (m := SPLIT_NAME.match(p.name)) is not None
            and m["prefix"] == quant
            and STORE_NAME.match(p.stem)
        )
    return [p for p in found if p.is_symlink() or p.exists()]


def _imatrix_caches(directory: Path, quant: str) -> list[Path]:
    """The importance matrices cached from entry `quant`: QUANT.KEY.imatrix."""
    key = f"[0-9a-f]{{{IMATRIX_KEY_DIGITS}}}"
    pattern = re.compile(rf"^{re.escape(quant)}\.{key}{re.escape(IMATRIX_SUFFIX)}$")
    return sorted(p for p in directory.iterdir() if pattern.match(p.name)) if directory.is_dir() else []
