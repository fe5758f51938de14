"""Model-pair profiles: a family's base and instruct checkpoints at one size (profiles/models/NAME.toml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import OndeviceError
from ..quant_names import LEVEL_NAMES
from .profile_files import INTERNAL, doc, find_profile, list_profiles, load_file

__all__ = ["Architecture", "ModelPair", "load_model_pair", "model_pairs", "pairs_for"]


@dataclass(frozen=True)
class Architecture:
    """The shape of the model, as its config.json (and GGUF header) states it; sizes memory estimates."""

    parameters: int = field(metadata=doc("Parameter count, embeddings included.", minimum=1, maximum=10**13))
    layers: int = field(metadata=doc("Transformer blocks (block_count).", minimum=1, maximum=4096))
    embedding: int = field(metadata=doc("Hidden width (embedding_length).", minimum=1))
    feed_forward: int = field(metadata=doc("Width of the MLP (feed_forward_length).", minimum=1))
    heads: int = field(metadata=doc("Attention heads.", minimum=1))
    kv_heads: int = field(
        metadata=doc("Key/value heads (fewer than heads with grouped-query attention).", minimum=1)
    )
    head_dim: int = field(metadata=doc("Width of one attention head (key_length = value_length).", minimum=1))
    vocab: int = field(metadata=doc("Vocabulary size.", minimum=1))
    context_length: int = field(metadata=doc("Context the model was trained for, in tokens.", minimum=1))
    sliding_window: int = field(
        default=0,
        metadata=doc("Sliding-window attention span in tokens; 0 when every layer is global.", minimum=0),
    )
    sliding_window_pattern: int = field(
        default=0,
        metadata=doc("Every Nth layer is global, the others slide (Gemma 3: 6); 0 without SWA.", minimum=0),
    )


@dataclass(frozen=True)
class ModelPair:
    """A base model and its instruction-tuned sibling, with where to get them and how to quantize them."""

    name: str = field(default="", metadata=INTERNAL)
    path: Path | None = field(default=None, metadata=INTERNAL)
    origin: str = field(default="", metadata=INTERNAL)
    family: str = field(default="", metadata=doc("Family name that `profiles recommend FAMILY` takes."))
    size: str = field(default="", metadata=doc("Size label, as the family names it: 135M, 1.7B."))
    description: str = field(default="", metadata=doc("One line for `profiles list`."))
    base: str = field(
        default="",
        metadata=doc(
            "Base (pretrained) model: Hugging Face ORG/REPO or bundled:NAME. Empty for a family that "
            "released no base model: the pair is instruct-only, and `models pull` takes the instruct."
        ),
    )
    base_revision: str = field(
        default="main",
        metadata=doc("Commit of the base repo to convert; `main` means not pinned yet (see notes)."),
    )
    instruct: str = field(default="", metadata=doc("Instruction-tuned model: ORG/REPO or bundled:NAME."))
    instruct_revision: str = field(default="main", metadata=doc("Commit of the instruct repo to convert."))
    base_gguf: str = field(
        default="",
        metadata=doc(
            "Hugging Face ORG/REPO of ready-made GGUF files of the base model; `models pull` takes them "
            "instead of converting (--convert forces conversion). Empty: converted."
        ),
    )
    base_gguf_revision: str = field(default="main", metadata=doc("Branch, tag or commit of base_gguf."))
    instruct_gguf: str = field(
        default="", metadata=doc("ORG/REPO of ready-made GGUF files of the instruct model. Empty: converted.")
    )
    instruct_gguf_revision: str = field(
        default="main", metadata=doc("Branch, tag or commit of instruct_gguf.")
    )
    license: str = field(default="", metadata=doc("The models' license, as their model cards state it."))
    gated: bool = field(
        default=False, metadata=doc("The repos need an accepted license and a token on Hugging Face.")
    )
    ladder: tuple[str, ...] = field(
        default=("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K"),
        metadata=doc(
            "Quantization levels `ondevice quantize` makes by default, best first.", choices=LEVEL_NAMES
        ),
    )
    notes: str = field(default="", metadata=doc("Anything a user should know before picking this pair."))
    architecture: Architecture | None = field(
        default=None, metadata=doc("[architecture] table: the model's shape, for memory estimates.")
    )

    def route(self, role: str) -> str:
        """How `models pull` gets the model of `role`: "bundled", "gguf" (a GGUF repo) or "convert"."""
        repo = self.base if role == "base" else self.instruct
        if repo.startswith("bundled:"):
            return "bundled"
        return "gguf" if (self.base_gguf if role == "base" else self.instruct_gguf) else "convert"

    def gguf_repo(self, role: str) -> tuple[str, str]:
        """The GGUF repo and its revision for `role` ("" when the profile names none)."""
        if role == "base":
            return self.base_gguf, self.base_gguf_revision
        return self.instruct_gguf, self.instruct_gguf_revision

    @property
    def bundled(self) -> bool:
        return self.base.startswith("bundled:") or self.instruct.startswith("bundled:")

    def refs(self) -> tuple[str, str]:
        """The references `ondevice` commands take for the base and the instruct model."""

        def ref(repo: str) -> str:
            return repo if not repo or repo.startswith("bundled:") else f"hf:{repo}"

        return ref(self.base), ref(self.instruct)

    def as_dict(self) -> dict[str, Any]:
        arch = self.architecture
        return {
            "name": self.name,
            "path": str(self.path) if self.path else None,
            "origin": self.origin,
            "family": self.family,
            "size": self.size,
            "description": self.description,
            "base": self.base,
            "base_revision": self.base_revision,
            "instruct": self.instruct,
            "instruct_revision": self.instruct_revision,
            "base_gguf": self.base_gguf,
            "base_gguf_revision": self.base_gguf_revision,
            "instruct_gguf": self.instruct_gguf,
            "instruct_gguf_revision": self.instruct_gguf_revision,
            "pull": {
                role: (
                    f"GGUF files from {self.gguf_repo(role)[0]}"
                    if self.route(role) == "gguf"
                    else "bundled, already quantized"
                    if self.route(role) == "bundled"
                    else "none: the family released no such model"
                    if not (self.base if role == "base" else self.instruct)
                    else f"converted from {self.base if role == 'base' else self.instruct}"
                )
                for role in ("base", "instruct")
            },
            "license": self.license,
            "gated": self.gated,
            "ladder": list(self.ladder),
            "notes": self.notes,
            "architecture": None if arch is None else dict(arch.__dict__),
        }


def load_model_pair(name: str) -> ModelPair:
    """A model-pair profile by name (the user's replaces the shipped one) or by path."""
    source = find_profile("models", name)
    return load_file(
        ModelPair, source.path, {"name": source.name, "path": source.path, "origin": source.origin}
    )


def model_pairs() -> list[ModelPair]:
    return [load_model_pair(s.name) for s in list_profiles("models")]


def pairs_for(family_or_name: str) -> list[ModelPair]:
    """The pairs of a family (every size), or the one pair of that name; smallest first."""
    wanted = family_or_name.strip().lower()
    pairs = model_pairs()
    found = [p for p in pairs if p.name.lower() == wanted] or [p for p in pairs if p.family.lower() == wanted]
    if not found:
        families = sorted({p.family for p in pairs})
        raise OndeviceError(
            f"no model family or pair named {family_or_name!r}; families: {', '.join(families)}; "
            f"pairs: {', '.join(p.name for p in pairs)}"
        )
    return sorted(found, key=lambda p: p.architecture.parameters if p.architecture else 0)
