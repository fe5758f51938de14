"""The model store: GGUF files with a manifest each, under $ONDEVICE_HOME/models/NAME/.

Layout: models/NAME/QUANT.gguf and models/NAME/QUANT.json. A reference NAME:QUANT picks one file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import locations
from .atomic import atomic_path, check_free_space, remove_stale_partials, write_text_atomic
from .errors import StoreError, UnknownReferenceError
from .gguf_file import GGUFSummary, read_gguf
from .kinds import Kind, KindDecision, decide_kind

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
    kind: str
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
        try:
            data = json.loads(text)
            known = {f.name for f in dataclasses.fields(cls)}
            unknown = set(data) - known
            if unknown:
                raise StoreError(f"{origin}: unknown manifest keys {sorted(unknown)}")
            return cls(**data)
        except (json.JSONDecodeError, TypeError) as exc:
            raise StoreError(f"{origin}: unreadable manifest ({exc})") from None


@dataclass(frozen=True)
class StoreEntry:
    manifest: Manifest
    path: Path  # the GGUF file


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
        kind=decision.kind.value,
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

    def entries(self) -> list[StoreEntry]:
        found = []
        if not self.models.is_dir():
            return found
        for manifest_path in sorted(self.models.glob("*/*.json")):
            manifest = Manifest.from_json(manifest_path.read_text(encoding="utf-8"), manifest_path)
            gguf = manifest_path.parent / manifest.file
            if gguf.is_file():
                found.append(StoreEntry(manifest, gguf))
        return found

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
        """Write a GGUF through `write(partial_path)`, validate it, then publish it and its manifest."""
        directory = self.model_dir(name)
        check_name(quant, "quantization name")
        directory.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(directory)
        check_free_space(directory, expected_size, f"adding {name}:{quant}")
        final = directory / f"{quant}.gguf"
        with atomic_path(final) as partial:
            write(partial)
            summary = read_gguf(partial)
        manifest = manifest_for(dataclasses.replace(summary, path=final))
        manifest.name, manifest.quant, manifest.file = name, quant, final.name
        write_text_atomic(directory / f"{quant}.json", manifest.to_json())
        return StoreEntry(manifest, final)

    def remove(self, name: str, quant: str | None = None) -> list[Path]:
        """Delete one file (NAME:QUANT) or every file of a model (NAME); return the paths removed."""
        entries = (
            [self.find(name, quant)] if quant else [e for e in self.entries() if e.manifest.name == name]
        )
        if not entries:
            raise UnknownReferenceError(f"no model named {name!r} in the store ({self.models})")
        removed = []
        for entry in entries:
            manifest_path = entry.path.with_suffix(".json")
            manifest_path.unlink(missing_ok=True)
            entry.path.unlink(missing_ok=True)
            removed.append(entry.path)
        directory = self.model_dir(name)
        remove_stale_partials(directory)
        with contextlib.suppress(OSError):  # still holds other files, or a live writer's partial
            directory.rmdir()
        return removed
