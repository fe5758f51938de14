"""The GGUF models in a Hub repo's file list, grouped by the quantization level each file name states
(as llama.cpp's `-hf` and Ollama read them), and the level a pull takes: the one asked for, Q4_K_M
when none is, else the closest the repo has."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ondevice.gguf_split import SPLIT_NAME
from ondevice.planning.recommend import LEVEL_BITS

from .hub_rules import HubError, HubRef, check_file_name

DEFAULT_LEVEL = "Q4_K_M"  # llama.cpp's `-hf` and Ollama pick it when no tag is given
ALIASES = {"FP16": "F16", "FP32": "F32"}
_LEVEL = re.compile(
    r"(?<![A-Za-z0-9])("
    + "|".join(sorted([*LEVEL_BITS, *ALIASES], key=len, reverse=True))
    + r")(?![A-Za-z0-9])",
    re.IGNORECASE,
)
_NOT_MODELS = ("mmproj", "imatrix")  # vision projectors and importance matrices are GGUF files too


def level_of(file_name: str) -> str | None:
    """The quantization level a file name states (case-insensitive, between separators), canonical."""
    for part in reversed(file_name.split("/")):  # the file's own name first, then its folders
        found = _LEVEL.findall(part)
        if found:
            level = found[-1].upper()
            return ALIASES.get(level, level)
    return None


def canonical_level(text: str) -> str:
    level = text.strip().upper()
    return ALIASES.get(level, level)


@dataclass(frozen=True)
class RepoFile:
    name: str
    size: int
    sha256: str  # the Hub's LFS oid (offline: the cache's blob name, which is that oid)


@dataclass(frozen=True)
class GGUFChoice:
    """One model in the repo: a GGUF file, or every shard of a split one, first shard first."""

    level: str | None
    files: tuple[RepoFile, ...]
    missing_shards: int = 0  # shards a split model's names promise that the repo does not list

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.files]


@dataclass(frozen=True)
class RepoListing:
    ref: HubRef
    commit: str
    choices: tuple[GGUFChoice, ...]
    from_cache: bool = False
    notes: tuple[str, ...] = ()

    @property
    def levels(self) -> list[str]:
        return [c.level or "?" for c in self.choices]


def group_files(repo: str, files: list[RepoFile]) -> tuple[GGUFChoice, ...]:
    """The repo's models: its GGUF files (projectors and imatrix files left out), shards grouped."""
    singles: list[GGUFChoice] = []
    splits: dict[tuple[str, int], dict[int, RepoFile]] = {}
    for f in files:
        check_file_name(repo, f.name)
        base = f.name.rsplit("/", 1)[-1]
        if not base.lower().endswith(".gguf") or any(w in base.lower() for w in _NOT_MODELS):
            continue
        match = SPLIT_NAME.match(f.name)
        if match:
            splits.setdefault((match["prefix"], int(match["count"])), {})[int(match["no"])] = f
        else:
            singles.append(GGUFChoice(level_of(f.name), (f,)))
    for (prefix, count), shards in splits.items():
        ordered = tuple(shards[k] for k in sorted(shards) if 1 <= k <= count)
        singles.append(GGUFChoice(level_of(prefix), ordered, missing_shards=count - len(ordered)))
    return tuple(sorted(singles, key=lambda c: (-LEVEL_BITS.get(c.level or "", 0.0), c.names[0])))


# -- choosing ----------------------------------------------------------------------------------


def choose(listing: RepoListing, quant: str | None = None) -> tuple[GGUFChoice, str | None]:
    """The model for `quant` (DEFAULT_LEVEL when None), and a line saying so when it is not that level."""
    choices = [c for c in listing.choices if c.missing_shards == 0]
    repo = listing.ref.repo_id
    if not choices:
        c = listing.choices[0]
        raise HubError(f"{repo}: {c.names[0]} is split but {c.missing_shards} of its shards are not listed")
    wanted = canonical_level(quant) if quant else DEFAULT_LEVEL
    if quant and wanted not in LEVEL_BITS and not any(c.level == wanted for c in choices):
        have = ", ".join(dict.fromkeys(c.level or "?" for c in choices))
        raise HubError(f"{quant!r} is not a quantization level llama.cpp makes; {repo} has: {have}")
    exact = [c for c in choices if c.level == wanted]
    if exact:
        return exact[0], None
    levelled = [c for c in choices if c.level in LEVEL_BITS]
    target = LEVEL_BITS.get(wanted, LEVEL_BITS[DEFAULT_LEVEL])
    asked = f"{wanted}" + ("" if quant else " (the default)")
    if not levelled:  # no level in any name: take the one model there is
        if len(choices) > 1:
            names = ", ".join(c.names[0] for c in choices)
            raise HubError(f"{repo}: no file name states a quantization level; files: {names}")
        return choices[0], f"{repo} names no level in {choices[0].names[0]}; taking it for {asked}"
    # Closest in typical bits per weight; on a tie the larger (better) one.
    best = min(levelled, key=lambda c: (abs(LEVEL_BITS[c.level or ""] - target), -LEVEL_BITS[c.level or ""]))
    return best, f"{repo} has no {asked}; taking {best.level}, the closest level it has"
