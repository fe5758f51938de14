"""`convert()`: a checkpoint directory (or Hub reference) to a GGUF file in the store."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from ondevice.atomic import atomic_path, check_free_space
from ondevice.errors import OndeviceError
from ondevice.gguf_file import read_gguf
from ondevice.gguf_summary import GGUFSummary
from ondevice.kinds import Kind
from ondevice.manifest import Manifest, check_name, describe, sha256_file
from ondevice.progress import Phase, Progress, ProgressFn
from ondevice.store import Store

from ..dequantize import convert_gguf
from ..outputs import ConvertResult
from ..safetensors_reader import Checkpoint
from .base import (
    ConvertError,
    Family,
    OutType,
    planned_size,
    read_config,
    write_gguf,
)
from .gemma3 import Gemma3Family
from .llama import LlamaFamily
from .phi3 import Phi3Family
from .qwen2 import Qwen2Family
from .qwen3 import Qwen3Family
from .smollm3 import SmolLM3Family

FAMILY_CLASSES: tuple[type[Family], ...] = (
    LlamaFamily,
    Qwen2Family,
    Qwen3Family,
    Gemma3Family,
    SmolLM3Family,
    Phi3Family,
)
FAMILIES: dict[str, type[Family]] = {t: cls for cls in FAMILY_CLASSES for t in cls.model_types}
PICKLED_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
_METADATA_SLACK = 64 * 1024 * 1024  # vocabulary and header on top of the tensor bytes


def family_for(directory: Path, root: Path | None = None) -> Family:
    """The family that reads the checkpoint in `directory`, with its weights opened and checked.

    `root`: where the directory's links may lead (a Hub snapshot's point into its repo's cache)."""
    if not directory.is_dir():
        raise ConvertError(f"{directory} is not a directory")
    config = read_config(directory)
    model_type = config.get("model_type")
    cls = FAMILIES.get(model_type) if isinstance(model_type, str) else None
    if cls is None:
        raise ConvertError(
            f"model_type {model_type!r} is not supported; supported: {', '.join(sorted(FAMILIES))}"
        )
    if (
        not any(directory.glob("*.safetensors"))
        and not (directory / "model.safetensors.index.json").is_file()
    ):
        pickled = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLED_SUFFIXES)
        if pickled:
            raise ConvertError(
                f"{directory} only has pickled weights ({', '.join(pickled[:3])}); "
                "they can run code when loaded, so only .safetensors are converted"
            )
    family = cls(directory, config, Checkpoint(directory, root))
    family.plan()  # names and shapes, and the tokenizer, are checked before any output is opened
    _ = family.vocab
    return family


def _general_name(directory: Path, config: dict) -> str:
    name = config.get("_name_or_path")
    return name if isinstance(name, str) and name.strip() else directory.name


def convert_directory(
    directory: Path, out: Path, outtype: OutType | str = OutType.F16, progress: ProgressFn | None = None
) -> Path:
    """Convert a checkpoint directory to one GGUF at `out` (temp file + rename); return `out`."""
    outtype = OutType.parse(outtype) if isinstance(outtype, str) else outtype
    family = family_for(directory)
    check_free_space(out.parent, planned_size(family, outtype) + _METADATA_SLACK, f"converting to {out.name}")
    metadata = {"general.name": _general_name(directory, family.config)}
    task = f"convert {directory.name} to {outtype.name}"
    with atomic_path(out) as partial:
        write_gguf(family, partial, outtype, metadata, progress, task)
        read_gguf(partial)
    return out


def _store_name(directory: Path) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", directory.name).strip("-.") or "model"


def _converted_before(store: Store, name: str, outtype: OutType, commit: str) -> ConvertResult | None:
    """The store's NAME:OUTTYPE when it was converted from this very commit."""
    try:
        entry = store.find(name, outtype.name)
    except OndeviceError:
        return None
    manifest = entry.manifest
    if manifest.revision != commit or manifest.extra.get("outtype") != outtype.value:
        return None
    return ConvertResult(
        ref=manifest.ref,
        path=entry.path,
        outtype=outtype.value,
        architecture=manifest.architecture or "",
        size_bytes=manifest.size_bytes,
        bits_per_weight=manifest.bits_per_weight,
        seconds=0.0,
        notes=[f"already in the store, converted from {commit[:12]}"],
    )


def _is_model_ref(source: str | Path) -> bool:
    """A GGUF model (a .gguf file, bundled:NAME) rather than a checkpoint directory or an hf: repo."""
    text = str(source).strip()
    if text.startswith("bundled:"):
        return True
    path = Path(text).expanduser()
    return path.suffix.lower() == ".gguf" and not path.is_dir()


def convert(
    source: str | Path,
    outtype: OutType | str = OutType.F16,
    *,
    name: str | None = None,
    kind: Kind | None = None,
    declared_by: str = "the caller",
    store: Store | None = None,
    progress: ProgressFn | None = None,
    notify: Callable[[str], None] | None = None,
) -> ConvertResult:
    """Convert `source` into the store as NAME:OUTTYPE.

    `source` is a local Hugging Face checkpoint directory, or `hf:ORG/REPO[@REV]`: the repo is downloaded
    into the Hugging Face cache first (see the hub module), and the manifest records the commit the
    revision resolved to. NAME defaults to the directory's or the repo's name. `notify` gets status lines.
    A GGUF (a .gguf path or bundled:NAME) is rewritten as `outtype` by llama.cpp (the dequantize module).
    """
    outtype = OutType.parse(outtype) if isinstance(outtype, str) else outtype
    store = store or Store()
    if _is_model_ref(source):
        return convert_gguf(str(source), outtype, name=name, store=store, progress=progress)
    task = f"convert {source} to {outtype.name}"
    revision = None
    extra: dict[str, object] = {}
    if isinstance(source, str) and source.strip().startswith("hf:"):
        from .. import hub, hub_rules  # here: huggingface_hub is only needed for Hub sources

        ref = hub_rules.parse_hub_ref(source)
        target = check_name(name or _store_name(Path(ref.name)))  # a bad name fails before the download

        def supported(config: dict) -> None:
            model_type = config.get("model_type")
            if not isinstance(model_type, str) or model_type not in FAMILIES:
                raise ConvertError(
                    f"{ref.repo_id}: model_type {model_type!r} is not supported; "
                    f"supported: {', '.join(sorted(FAMILIES))}"
                )

        if progress is not None:  # huggingface_hub draws its own download bars
            progress(Progress(task, f"downloading {ref.repo_id}", phase=Phase.HANDED_OFF))
        snapshot = hub.download(ref, check=supported, notify=notify)
        done = _converted_before(store, target, outtype, snapshot.commit)
        if done is not None:  # the converter is deterministic: the same commit gives the same file
            if notify is not None:
                notify(f"{done.ref} is already converted from {ref.repo_id}@{snapshot.commit[:12]}")
            return done
        directory, root = snapshot.directory, snapshot.directory.parent.parent
        revision = snapshot.commit
        label = snapshot.source
        # The config's _name_or_path is often the uploader's local path; the repo id says what it is.
        general_name: str | None = ref.repo_id
        extra = {"repo": ref.repo_id, "requested_revision": ref.revision}
    else:
        directory = Path(source).expanduser()
        label = str(directory.resolve()) if directory.exists() else str(directory)
        target, root, general_name = None, None, None
    family = family_for(directory, root)
    target = target or check_name(name or _store_name(directory))
    general_name = general_name or _general_name(directory, family.config)
    quant = outtype.name
    started = time.monotonic()
    digest = ""

    def write(partial: Path) -> None:
        nonlocal digest
        write_gguf(family, partial, outtype, {"general.name": general_name}, progress, task)
        digest = sha256_file(partial)

    def manifest_for(summary: GGUFSummary) -> Manifest:
        manifest = describe(
            summary,
            name=target,
            quant=quant,
            source=label,
            sha256=digest,
            declared_kind=kind,
            declared_by=declared_by,
            revision=revision,
        )
        manifest.extra = {
            "outtype": outtype.value,
            "model_type": family.config.get("model_type"),
            "seconds": round(time.monotonic() - started, 2),
            **extra,
        }
        return manifest

    entry = store.add(target, quant, write, planned_size(family, outtype) + _METADATA_SLACK, manifest_for)
    return ConvertResult(
        ref=entry.manifest.ref,
        path=entry.path,
        outtype=outtype.value,
        architecture=entry.manifest.architecture or family.arch_name,
        size_bytes=entry.manifest.size_bytes,
        bits_per_weight=entry.manifest.bits_per_weight,
        seconds=time.monotonic() - started,
    )
