"""What the store knows about each GGUF file: its manifest (QUANT.json beside it), read by one typed
reader, and how a manifest is made for a validated file (`describe`)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import StoreError
from .gguf_split import split_name
from .gguf_summary import GGUFSummary
from .kinds import Kind, KindDecision, decide_kind
from .quant_names import KV_IMATRIX_CHUNKS, KV_IMATRIX_DATASET, KV_IMATRIX_ENTRIES, KV_IMATRIX_FILE
from .records import RecordError, from_dict

STORE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass
class Shard:
    """One file of a split model."""

    file: str  # QUANT-0000k-of-0000n.gguf, inside the model's directory
    sha256: str
    size_bytes: int


@dataclass
class ImatrixRecord:
    """The importance matrix a file was quantized with: which file (its sha256) and what it was
    collected over. A file quantized elsewhere tells only what its GGUF header records (see
    `imatrix_from_header`): what it cannot tell is left empty ("" or 0), never guessed."""

    sha256: str = ""  # of the matrix file; unknown for a file quantized elsewhere
    datasets: list[str] = field(default_factory=list)
    chunk_count: int = 0
    chunk_size: int = 0  # tokens per chunk; not in a quantized file's header
    entries: int = 0  # weights it has statistics for
    file: str = ""  # the matrix's file name, as the quantized file's header records it


@dataclass
class TensorType:
    """One `--tensor-type PATTERN=TYPE`: tensors whose name the regex finds get the ggml type."""

    pattern: str
    type: str  # a ggml type name, upper case: Q8_0, Q6_K, F16


@dataclass
class QuantOverrides:
    """Tensor types chosen by hand over the level's own mixture (llama-quantize's flags)."""

    tensor_types: list[TensorType] = field(default_factory=list)
    output_tensor_type: str | None = None
    token_embedding_type: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.tensor_types or self.output_tensor_type or self.token_embedding_type)

    def describe(self) -> str:
        """One line: "ffn_down=Q8_0, output=Q8_0, token_embd=Q6_K"."""
        parts = [f"{t.pattern}={t.type}" for t in self.tensor_types]
        if self.output_tensor_type:
            parts.append(f"output={self.output_tensor_type}")
        if self.token_embedding_type:
            parts.append(f"token_embd={self.token_embedding_type}")
        return ", ".join(parts)


@dataclass
class Manifest:
    """What the store knows about one GGUF file. Written next to it as QUANT.json."""

    name: str
    quant: str
    file: str  # file name inside the model's directory (a split model's first shard)
    source: str  # where it came from: bundled:NAME, hf:ORG/REPO, a path, or quantize:NAME:QUANT
    sha256: str  # of `file` (for a split model the first shard's; `shards` has each one's)
    architecture: str | None
    kind: Kind
    kind_reason: str
    parameter_count: int
    size_bytes: int  # a split model's: all shards together
    bits_per_weight: float
    context_length: int | None
    has_chat_template: bool
    revision: str | None = None
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    shards: list[Shard] = field(default_factory=list)  # empty, or every file of a split model in order
    imatrix: ImatrixRecord | None = None  # quantized with an importance matrix (older manifests: none)
    overrides: QuantOverrides | None = None  # tensor types chosen by hand (older manifests: none)

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
        if manifest.shards:
            n = len(manifest.shards)
            expected = [split_name(manifest.quant, i, n) for i in range(1, n + 1)]
            if (
                n < 2
                or [s.file for s in manifest.shards] != expected
                or manifest.file != expected[0]
                or any(
                    s.size_bytes < 0 or not re.fullmatch(r"[0-9a-f]{64}", s.sha256) for s in manifest.shards
                )
                or sum(s.size_bytes for s in manifest.shards) != manifest.size_bytes
                or manifest.shards[0].sha256 != manifest.sha256
            ):
                raise StoreError(
                    f"{origin}: the manifest's shards are not {manifest.quant}-00001-of-{n:05d}.gguf ... "
                    "with sizes that add up and a sha256 each"
                )
        return manifest


def check_name(name: str, what: str = "model name") -> str:
    if not STORE_NAME.match(name):
        raise StoreError(f"invalid {what} {name!r}: use letters, digits, '.', '_' and '-'")
    return name


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(4 << 20):
            digest.update(block)
    return digest.hexdigest()


def imatrix_header(record: ImatrixRecord) -> dict[str, str | int]:
    """What llama-quantize writes into a GGUF quantized with the matrix `record` describes
    (quantize.imatrix.*): read back by `imatrix_from_header`."""
    header: dict[str, str | int] = {KV_IMATRIX_FILE: record.file}
    if record.datasets:
        header[KV_IMATRIX_DATASET] = record.datasets[0]
    header[KV_IMATRIX_ENTRIES] = record.entries
    if record.chunk_count > 0:
        header[KV_IMATRIX_CHUNKS] = record.chunk_count
    return header


def imatrix_from_header(metadata: dict[str, Any]) -> ImatrixRecord | None:
    """The matrix a GGUF was quantized with, as llama-quantize records it in the header
    (quantize.imatrix.*); None when the header records none."""
    if KV_IMATRIX_ENTRIES not in metadata:
        return None
    dataset = metadata.get(KV_IMATRIX_DATASET)
    # A string or an array of them; an array too long to list (ArrayInfo) names none we can show.
    datasets = [dataset] if isinstance(dataset, str) else dataset if isinstance(dataset, list) else []
    return ImatrixRecord(
        datasets=[str(d) for d in datasets],
        chunk_count=_count(metadata.get(KV_IMATRIX_CHUNKS)),
        entries=_count(metadata.get(KV_IMATRIX_ENTRIES)),
        file=str(metadata.get(KV_IMATRIX_FILE) or ""),
    )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


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
