"""What ondevice takes from a Hugging Face Hub repo: `hf:ORG/REPO[@REV][:QUANT]` references, the files a
conversion fetches (safetensors, config, tokenizer), and what is refused before anything is downloaded
(pickled-only weights, remote code, file names that would escape the snapshot directory)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ondevice.errors import OndeviceError

PREFIX = "hf:"
INDEX_NAME = "model.safetensors.index.json"
CONFIG_NAME = "config.json"
# Everything but the weights a conversion reads: config, tokenizer, chat template.
CONFIG_FILES = (
    CONFIG_NAME,
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
)
PICKLED_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_REVISION = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._/-]{0,199}$")
_QUANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]{0,31}$")
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")


class HubError(OndeviceError):
    """A Hub repo cannot be fetched or is refused (unsafe files, remote code, not found, offline)."""


class HubUnreachableError(HubError):
    """The Hub did not answer (no network, refused connection, timeout, dropped transfer)."""


# -- references --------------------------------------------------------------------------------


@dataclass(frozen=True)
class HubRef:
    """A Hub model repo at a revision (branch, tag or commit), and for a repo of GGUF files the
    quantization level wanted (`:Q4_K_M`, as llama.cpp's `-hf` and Ollama's `hf.co/` take it)."""

    repo_id: str
    revision: str = "main"
    quant: str | None = None

    @property
    def name(self) -> str:
        """The repo's name without its organisation."""
        return self.repo_id.split("/", 1)[1]

    def __str__(self) -> str:
        return f"{PREFIX}{self.repo_id}@{self.revision}" + (f":{self.quant}" if self.quant else "")


def parse_hub_ref(text: str, default_revision: str = "main") -> HubRef:
    """`hf:ORG/REPO[@REV][:QUANT]` (the `hf:` prefix is optional) as a HubRef; anything else is one
    clear line. Neither a repo id nor a git revision holds a ':', so the first one starts QUANT."""
    body = text.strip().removeprefix(PREFIX)
    body, colon, quant = body.partition(":")
    if colon and not _QUANT.match(quant):
        raise HubError(
            f"{text!r}: {quant!r} is not a quantization level; write hf:ORG/REPO[@REV]:QUANT (e.g. :Q4_K_M)"
        )
    repo_id, at, revision = body.partition("@")
    if at and not revision:
        raise HubError(f"{text!r}: nothing after '@'; write hf:ORG/REPO@REVISION (a branch, tag or commit)")
    revision = revision or default_revision
    if not _REPO_ID.match(repo_id) or ".." in repo_id or "--" in repo_id:
        raise HubError(f"{text!r} is not a Hub model reference; write hf:ORG/REPO or hf:ORG/REPO@REVISION")
    if not _REVISION.match(revision) or ".." in revision or revision.endswith("/"):
        raise HubError(f"{text!r}: {revision!r} is not a valid revision (a branch, tag or commit sha)")
    return HubRef(repo_id, revision, quant or None)


# -- what to fetch, and what to refuse ---------------------------------------------------------


def check_file_name(repo: str, name: str) -> str:
    """`name` if it stays inside the snapshot directory; refuse absolute paths, `..`, backslashes."""
    parts = name.split("/")
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or "\x00" in name
        or re.match(r"^[A-Za-z]:", name)
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise HubError(
            f"{repo} lists a file named {name!r}, which would escape the download directory; refused"
        )
    return name


def is_top_level(name: str) -> bool:
    return "/" not in name


@dataclass(frozen=True)
class FilePlan:
    """The repo files one conversion needs: config and tokenizer files, then the weights."""

    config_files: tuple[str, ...]
    weights: tuple[str, ...]
    index: str | None

    @property
    def all(self) -> tuple[str, ...]:
        return self.config_files + ((self.index,) if self.index else ()) + self.weights


def plan_files(repo: str, names: Iterable[str]) -> FilePlan:
    """Check a repo's file list and pick the files to fetch (the weights the index names come later)."""
    names = [check_file_name(repo, n) for n in names]
    present = set(names)
    if CONFIG_NAME not in present:
        raise HubError(f"{repo} has no config.json: not a transformers checkpoint")
    safetensors = sorted(n for n in names if is_top_level(n) and n.endswith(".safetensors"))
    pickled = sorted(n for n in names if n.lower().endswith(PICKLED_SUFFIXES))
    if not safetensors:
        if pickled:
            shown = ", ".join(pickled[:3]) + (", ..." if len(pickled) > 3 else "")
            raise HubError(
                f"{repo} only has pickled weights ({shown}); they can run code when loaded, "
                "so only .safetensors are downloaded"
            )
        raise HubError(f"{repo} has no .safetensors weights")
    config_files = tuple(n for n in CONFIG_FILES if n in present)
    index = INDEX_NAME if INDEX_NAME in present else None
    return FilePlan(config_files, () if index else tuple(safetensors), index)


def shards_from_index(repo: str, index_path: Path, present: set[str] | None = None) -> tuple[str, ...]:
    """The shard files a model.safetensors.index.json names, each checked (and in `present`, if given)."""
    try:
        weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise HubError(f"{repo}: {INDEX_NAME} is unreadable ({exc})") from None
    if not isinstance(weight_map, dict) or not weight_map:
        raise HubError(f"{repo}: {INDEX_NAME} has no weight_map")
    shards = sorted({str(v) for v in weight_map.values()})
    for shard in shards:
        check_file_name(repo, shard)
        if not shard.endswith(".safetensors"):
            raise HubError(f"{repo}: {INDEX_NAME} names {shard!r}, which is not a .safetensors file")
    missing = [s for s in shards if present is not None and s not in present]
    if missing:
        raise HubError(f"{repo}: {INDEX_NAME} names shards the repo does not have: {', '.join(missing[:3])}")
    return tuple(shards)


def check_config(repo: str, config: Any, files: Iterable[str] = ()) -> None:
    """Refuse a config that needs code from the repo (`auto_map` names the repo's own classes)."""
    if not isinstance(config, dict):
        raise HubError(f"{repo}: config.json is not a JSON object")
    auto_map = config.get("auto_map")
    if auto_map:
        code = sorted(n for n in files if n.endswith(".py"))
        hint = f" ({', '.join(code[:3])})" if code else ""
        raise HubError(
            f"{repo} needs remote code{hint}: its config.json has auto_map; "
            "only checkpoints that transformers reads without running repo code are converted"
        )


def read_json(repo: str, path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HubError(f"{repo}: {path.name} is not valid JSON ({exc})") from None
