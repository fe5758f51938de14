"""Models split in shards (llama.cpp's gguf-split): the shard names llama.cpp looks for, and one
summary for a whole split model, each shard validated by the reader."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import gguf

from .errors import GGUFError
from .gguf_file import read_gguf
from .gguf_summary import GGUFSummary

SPLIT_NAME = re.compile(r"^(?P<prefix>.+)-(?P<no>[0-9]{5})-of-(?P<count>[0-9]{5})\.gguf$")
MAX_SPLITS = 9999


def split_name(prefix: str, number: int, count: int) -> str:
    """The file name llama.cpp looks for: shard `number` (from 1) of `count`."""
    return f"{prefix}-{number:05d}-of-{count:05d}.gguf"


def read_gguf_model(path: str | os.PathLike[str]) -> GGUFSummary:
    """`read_gguf` for a whole model: a single file as it is, or the first shard of a split model with
    every other shard found beside it by name (as llama.cpp finds them), each validated, summed into
    one summary (`file_size` and `tensors` of all shards; the metadata of the first)."""
    path = Path(path)
    first = read_gguf(path)
    count = first.metadata.get(gguf.Keys.Split.LLM_KV_SPLIT_COUNT)
    if count is None or count == 1:
        return first
    match = SPLIT_NAME.match(path.name)
    if match is None or int(match["no"]) != 1 or int(match["count"]) != count:
        raise GGUFError(
            f"{path}: part of a model split in {count!r} files; llama.cpp opens the first shard, "
            f"named PREFIX-00001-of-{count!s:>05}.gguf"
        )
    others = [path.with_name(split_name(match["prefix"], i, count)) for i in range(2, count + 1)]
    return combine_shards([first, *(read_gguf(p) for p in others)])


def combine_shards(shards: list[GGUFSummary]) -> GGUFSummary:
    """One summary for a split model's validated shards, in order; GGUFError unless they are shards
    0 .. n-1 of one n-way split that together hold `split.tensors.count` distinct tensors."""
    first = shards[0]
    count = len(shards)
    if not 1 < count <= MAX_SPLITS:
        raise GGUFError(f"{first.path}: a split model has 2 to {MAX_SPLITS} shards, not {count}")
    for number, shard in enumerate(shards):
        meta = shard.metadata
        found = (meta.get(gguf.Keys.Split.LLM_KV_SPLIT_NO), meta.get(gguf.Keys.Split.LLM_KV_SPLIT_COUNT))
        if found != (number, count):
            raise GGUFError(
                f"{shard.path}: its split metadata (split.no, split.count) is {found}, "
                f"not shard {number} of {count}"
            )
    tensors = tuple(t for shard in shards for t in shard.tensors)
    if len({t.name for t in tensors}) != len(tensors):
        raise GGUFError(f"{first.path}: the shards of this model hold the same tensor twice")
    declared = first.metadata.get(gguf.Keys.Split.LLM_KV_SPLIT_TENSORS_COUNT)
    if declared is not None and declared != len(tensors):
        raise GGUFError(
            f"{first.path}: split.tensors.count is {declared}, the {count} shards hold {len(tensors)}"
        )
    return dataclasses.replace(first, file_size=sum(s.file_size for s in shards), tensors=tensors)
