"""Hugging Face Hub checkpoints, downloaded through huggingface_hub's own cache, safetensors only.

`download(ref)` fetches what a conversion needs from `hf:ORG/REPO[@REV]` and returns the snapshot
directory with the commit the revision resolved to (recorded in the store's manifest). Before any weight
is fetched, the repo's file list and its config are checked: pickled-only weights, remote code, file
names that would escape the snapshot directory and a missing config.json are refused with one line.

Downloads go through `snapshot_download`/`hf_hub_download`, so they land in the Hugging Face cache and
honour its settings. HF_ENDPOINT, HF_HOME, HF_HUB_CACHE and HF_HUB_OFFLINE are read when a download
starts (huggingface_hub itself reads them once, at import), HF_TOKEN by huggingface_hub per request.
In offline mode, or when the Hub cannot be reached, a snapshot already in the cache is used.
"""

from __future__ import annotations

import contextlib
import glob
import importlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ondevice.atomic import check_free_space
from ondevice.errors import OndeviceError

__all__ = [
    "CONFIG_FILES",
    "PICKLED_SUFFIXES",
    "HubError",
    "HubRef",
    "HubSettings",
    "HubUnreachableError",
    "Snapshot",
    "check_config",
    "check_file_name",
    "download",
    "parse_hub_ref",
    "plan_files",
]

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
_COMMIT = re.compile(r"^[0-9a-f]{40}$")

Notify = Callable[[str], None]


class HubError(OndeviceError):
    """A Hub repo cannot be fetched or is refused (unsafe files, remote code, not found, offline)."""


class HubUnreachableError(HubError):
    """The Hub did not answer (no network, refused connection, timeout, dropped transfer)."""


# -- references --------------------------------------------------------------------------------


@dataclass(frozen=True)
class HubRef:
    """A Hub model repo at a revision (branch, tag or commit)."""

    repo_id: str
    revision: str = "main"

    @property
    def name(self) -> str:
        """The repo's name without its organisation."""
        return self.repo_id.split("/", 1)[1]

    def __str__(self) -> str:
        return f"{PREFIX}{self.repo_id}@{self.revision}"


def parse_hub_ref(text: str, default_revision: str = "main") -> HubRef:
    """`hf:ORG/REPO[@REV]` (the `hf:` prefix is optional) as a HubRef; anything else is one clear line."""
    body = text.strip().removeprefix(PREFIX)
    repo_id, at, revision = body.partition("@")
    if at and not revision:
        raise HubError(f"{text!r}: nothing after '@'; write hf:ORG/REPO@REVISION (a branch, tag or commit)")
    revision = revision or default_revision
    if not _REPO_ID.match(repo_id) or ".." in repo_id or "--" in repo_id:
        raise HubError(f"{text!r} is not a Hub model reference; write hf:ORG/REPO or hf:ORG/REPO@REVISION")
    if not _REVISION.match(revision) or ".." in revision or revision.endswith("/"):
        raise HubError(f"{text!r}: {revision!r} is not a valid revision (a branch, tag or commit sha)")
    return HubRef(repo_id, revision)


# -- settings ----------------------------------------------------------------------------------


def _is_true(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


@dataclass(frozen=True)
class HubSettings:
    """Where and how to reach the Hub; `from_env()` reads the variables huggingface_hub documents."""

    endpoint: str
    cache_dir: Path
    offline: bool

    @classmethod
    def from_env(cls) -> HubSettings:
        from huggingface_hub import constants

        env = os.environ
        endpoint = (env.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
        if env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE"):
            cache = env.get("HF_HUB_CACHE") or env["HUGGINGFACE_HUB_CACHE"]
        elif env.get("HF_HOME"):
            cache = os.path.join(env["HF_HOME"], "hub")
        else:
            cache = constants.HF_HUB_CACHE
        offline_env = env.get("HF_HUB_OFFLINE") or env.get("TRANSFORMERS_OFFLINE")
        offline = _is_true(offline_env) if offline_env is not None else bool(constants.HF_HUB_OFFLINE)
        return cls(endpoint, Path(os.path.expandvars(cache)).expanduser(), offline)


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


def _top_level(name: str) -> bool:
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
    safetensors = sorted(n for n in names if _top_level(n) and n.endswith(".safetensors"))
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


def _read_json(repo: str, path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HubError(f"{repo}: {path.name} is not valid JSON ({exc})") from None


# -- errors from huggingface_hub, as one line --------------------------------------------------


def _network_errors() -> tuple[type[BaseException], ...]:
    """Transport errors of whichever HTTP client this huggingface_hub uses (httpx2, httpx or requests)."""
    found: list[type[BaseException]] = []
    for module, names in (
        ("httpx2", ("TransportError",)),
        ("httpx", ("TransportError",)),
        ("requests", ("ConnectionError", "Timeout")),
    ):
        try:
            loaded = importlib.import_module(module)
        except ImportError:
            continue
        found += [getattr(loaded, n) for n in names if isinstance(getattr(loaded, n, None), type)]
    return tuple(found)


def _offline_errors(errors: Any) -> tuple[type[BaseException], ...]:
    found = getattr(errors, "OfflineModeIsEnabled", None)
    return (found,) if isinstance(found, type) else ()


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


@contextlib.contextmanager
def _hub_errors(ref: HubRef, settings: HubSettings, what: str) -> Iterator[None]:
    """Translate huggingface_hub's exceptions raised while doing `what` into one HubError line."""
    from huggingface_hub import errors

    try:
        yield
    except HubError:
        raise
    except errors.GatedRepoError:
        raise HubError(
            f"{ref.repo_id} is gated: accept its terms on the Hub, then set HF_TOKEN "
            "(or log in with `hf auth login`)"
        ) from None
    except errors.RepositoryNotFoundError:
        raise HubError(
            f"no model repo {ref.repo_id} on {settings.endpoint} "
            "(if it is private or gated, set HF_TOKEN to a token that can read it)"
        ) from None
    except errors.RevisionNotFoundError:
        raise HubError(f"{ref.repo_id} has no revision {ref.revision!r} (a branch, tag or commit)") from None
    except errors.LocalEntryNotFoundError:
        if settings.offline:
            raise HubError(
                f"{ref.repo_id}@{ref.revision} is not in the Hugging Face cache ({settings.cache_dir}) and "
                "HF_HUB_OFFLINE is set: download it once online"
            ) from None
        raise HubError(
            f"cannot reach {settings.endpoint} and {ref.repo_id}@{ref.revision} is not in the "
            f"Hugging Face cache ({settings.cache_dir})"
        ) from None
    except errors.EntryNotFoundError as exc:
        raise HubError(
            f"{ref.repo_id}@{ref.revision}: a file is missing while {what} ({_first_line(exc)})"
        ) from None
    except errors.HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        raise HubError(
            f"the Hub answered {status or 'an error'} while {what} {ref.repo_id}@{ref.revision}: "
            f"{_first_line(exc)}; run again to retry"
        ) from None
    except _network_errors() + _offline_errors(errors) as exc:
        raise HubUnreachableError(
            f"lost the connection to {settings.endpoint} while {what} {ref.repo_id} ({_first_line(exc)}); "
            "run again to retry"
        ) from None
    except OSError as exc:  # huggingface_hub's size consistency check, or the cache's disk
        raise HubError(f"{what} {ref.repo_id}@{ref.revision} failed: {_first_line(exc)}") from None


# -- the download ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """A repo's files at one commit, in the Hugging Face cache."""

    ref: HubRef
    commit: str
    directory: Path
    files: tuple[str, ...]
    from_cache: bool = False  # no Hub was asked: offline, or unreachable
    download_bytes: int = 0  # bytes fetched in this call (0 when everything was cached)
    notes: list[str] = field(default_factory=list)

    @property
    def source(self) -> str:
        """The manifest's source: the repo pinned to the commit."""
        return f"{PREFIX}{self.ref.repo_id}@{self.commit}"


def _snapshot_commit(ref: HubRef, path: Path) -> str:
    """The commit of a cached file's snapshot (the cache keeps files under snapshots/COMMIT/)."""
    directory = path.parent
    if directory.parent.name != "snapshots" or not _COMMIT.match(directory.name):
        raise HubError(f"{ref.repo_id}: {path} is not inside a Hugging Face cache snapshot")
    return directory.name


def _escape(names: Iterable[str]) -> list[str]:
    """Exact names as allow_patterns (fnmatch): brackets and wildcards escaped."""
    return [glob.escape(n) for n in names]


def download(
    ref: HubRef | str,
    *,
    settings: HubSettings | None = None,
    check: Callable[[dict[str, Any]], None] | None = None,
    notify: Notify | None = None,
    max_workers: int = 8,
) -> Snapshot:
    """Fetch config, tokenizer and safetensors weights of `ref` into the Hugging Face cache.

    `check(config)` runs on config.json before any weight is fetched (a converter refuses an unsupported
    model_type there). Progress bars are huggingface_hub's own (HF_HUB_DISABLE_PROGRESS_BARS hides them);
    `notify` gets one line per step.
    """
    ref = parse_hub_ref(ref) if isinstance(ref, str) else ref
    settings = settings or HubSettings.from_env()
    say = notify or (lambda _line: None)
    if settings.offline:
        return _from_cache(ref, settings, check, reason="HF_HUB_OFFLINE is set")
    from huggingface_hub import HfApi

    api = HfApi(endpoint=settings.endpoint)
    try:
        with _hub_errors(ref, settings, "looking up"):
            info = api.model_info(ref.repo_id, revision=ref.revision, files_metadata=True)
    except HubUnreachableError:
        say(f"cannot reach {settings.endpoint}; looking for {ref.repo_id}@{ref.revision} in the cache")
        return _from_cache(ref, settings, check, reason=f"{settings.endpoint} cannot be reached")
    commit = str(info.sha or "")
    if not _COMMIT.match(commit):
        raise HubError(f"{settings.endpoint} gave no commit for {ref.repo_id}@{ref.revision}")
    sizes = {s.rfilename: s.size for s in (info.siblings or [])}
    plan = plan_files(ref.repo_id, sizes)
    if ref.revision != commit:
        say(f"{ref.repo_id}@{ref.revision} is commit {commit}")
    common = {"repo_id": ref.repo_id, "cache_dir": str(settings.cache_dir), "endpoint": settings.endpoint}

    from huggingface_hub import hf_hub_download, snapshot_download, try_to_load_from_cache

    with _hub_errors(ref, settings, "downloading the config of"):
        # By the revision as asked, so the cache records it (refs/REV) for offline runs.
        config_path = Path(hf_hub_download(filename=CONFIG_NAME, revision=ref.revision, **common))
    if _snapshot_commit(ref, config_path) != commit:
        raise HubError(f"{ref.repo_id}@{ref.revision} moved to another commit during the download; run again")
    directory = config_path.parent
    config = _read_json(ref.repo_id, config_path)
    check_config(ref.repo_id, config, sizes)
    if check is not None:
        check(config)

    small = [n for n in plan.config_files if n != CONFIG_NAME] + ([plan.index] if plan.index else [])
    if small:
        with _hub_errors(ref, settings, "downloading the tokenizer of"):
            snapshot_download(
                revision=commit, allow_patterns=_escape(small), max_workers=max_workers, **common
            )
    tokenizer_config = directory / "tokenizer_config.json"
    if tokenizer_config.is_file():
        found = _read_json(ref.repo_id, tokenizer_config)
        if isinstance(found, dict) and found.get("auto_map"):
            raise HubError(f"{ref.repo_id} needs remote code: its tokenizer_config.json has auto_map")
    weights = (
        shards_from_index(ref.repo_id, directory / plan.index, set(sizes)) if plan.index else plan.weights
    )

    cached = {"repo_id": ref.repo_id, "cache_dir": str(settings.cache_dir), "revision": commit}
    missing = [w for w in weights if not isinstance(try_to_load_from_cache(filename=w, **cached), str)]
    needed = sum(int(sizes.get(w) or 0) for w in missing)
    if needed:
        settings.cache_dir.mkdir(parents=True, exist_ok=True)
        check_free_space(settings.cache_dir, needed, f"downloading {ref.repo_id}")
        say(f"downloading {len(missing)} weight file(s), {needed:,} bytes, into {settings.cache_dir}")
    with _hub_errors(ref, settings, "downloading"):
        folder = Path(
            snapshot_download(
                revision=commit, allow_patterns=_escape(weights), max_workers=max_workers, **common
            )
        )
    if folder != directory:
        raise HubError(f"{ref.repo_id}: the snapshot landed in {folder}, expected {directory}")
    files = tuple(n for n in (*plan.config_files, *([plan.index] if plan.index else []), *weights))
    _require_files(ref, directory, files, offline=False)
    return Snapshot(ref, commit, directory, files, from_cache=False, download_bytes=needed)


def _require_files(ref: HubRef, directory: Path, files: Iterable[str], *, offline: bool) -> None:
    missing = [n for n in files if not (directory / n).is_file()]
    if missing:
        how = "download it again online" if offline else "run again to finish the download"
        raise HubError(
            f"the cached snapshot of {ref.repo_id} at {directory.name} lacks {', '.join(missing[:3])}; {how}"
        )


def _from_cache(
    ref: HubRef, settings: HubSettings, check: Callable[[dict[str, Any]], None] | None, reason: str
) -> Snapshot:
    """The snapshot the cache holds for `ref`, checked like a fresh download, without asking the Hub."""
    from huggingface_hub import hf_hub_download

    with _hub_errors(ref, settings, "reading the cache for"):
        config_path = Path(
            hf_hub_download(
                ref.repo_id,
                CONFIG_NAME,
                revision=ref.revision,
                cache_dir=str(settings.cache_dir),
                local_files_only=True,
            )
        )
    commit = _snapshot_commit(ref, config_path)
    directory = config_path.parent
    names = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())
    if not any(_top_level(n) and n.endswith(".safetensors") for n in names):  # an interrupted download
        index = directory / INDEX_NAME
        shards = shards_from_index(ref.repo_id, index) if index.is_file() else ("model.safetensors",)
        _require_files(ref, directory, shards, offline=True)
    plan = plan_files(ref.repo_id, names)
    config = _read_json(ref.repo_id, config_path)
    check_config(ref.repo_id, config, names)
    if check is not None:
        check(config)
    weights = shards_from_index(ref.repo_id, directory / plan.index) if plan.index else plan.weights
    files = (*plan.config_files, *([plan.index] if plan.index else []), *weights)
    _require_files(ref, directory, files, offline=True)
    return Snapshot(
        ref, commit, directory, tuple(files), from_cache=True, notes=[f"from the cache: {reason}"]
    )
