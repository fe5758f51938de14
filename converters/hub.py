"""Hugging Face Hub checkpoints, downloaded through huggingface_hub's own cache, safetensors only.

`download(ref)` fetches what a conversion needs from `hf:ORG/REPO[@REV]` and returns the snapshot
directory with the commit the revision resolved to (recorded in the store's manifest). Before any weight
is fetched, the repo's file list and its config are checked: pickled-only weights, remote code, file
names that would escape the snapshot directory and a missing config.json are refused with one line
(the rules live in hub_rules).

Downloads go through `snapshot_download`/`hf_hub_download`, so they land in the Hugging Face cache and
honour its settings. HF_ENDPOINT, HF_HOME, HF_HUB_CACHE and HF_HUB_OFFLINE are read when a download
starts (huggingface_hub itself reads them once, at import), HF_TOKEN by huggingface_hub per request.
In offline mode, or when the Hub cannot be reached, a snapshot already in the cache is used.
"""

from __future__ import annotations

import contextlib
import glob
import importlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ondevice.atomic import check_free_space

from .hub_rules import (
    COMMIT_SHA,
    CONFIG_NAME,
    INDEX_NAME,
    PREFIX,
    HubError,
    HubRef,
    HubUnreachableError,
    check_config,
    is_top_level,
    parse_hub_ref,
    plan_files,
    read_json,
    shards_from_index,
)

__all__ = ["HubSettings", "Snapshot", "download"]

Notify = Callable[[str], None]


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
def hub_errors(ref: HubRef, settings: HubSettings, what: str) -> Iterator[None]:
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


def snapshot_commit(ref: HubRef, path: Path) -> str:
    """The commit of a cached file's snapshot (the cache keeps files under snapshots/COMMIT/)."""
    directory = path.parent
    if directory.parent.name != "snapshots" or not COMMIT_SHA.match(directory.name):
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
    if ref.quant:
        raise HubError(
            f"{ref}: ':{ref.quant}' picks a file of a GGUF repo; `ondevice models pull {ref}` fetches it, "
            "a conversion takes hf:ORG/REPO[@REV]"
        )
    settings = settings or HubSettings.from_env()
    say = notify or (lambda _line: None)
    if settings.offline:
        return _from_cache(ref, settings, check, reason="HF_HUB_OFFLINE is set")
    from huggingface_hub import HfApi

    api = HfApi(endpoint=settings.endpoint)
    try:
        with hub_errors(ref, settings, "looking up"):
            info = api.model_info(ref.repo_id, revision=ref.revision, files_metadata=True)
    except HubUnreachableError:
        say(f"cannot reach {settings.endpoint}; looking for {ref.repo_id}@{ref.revision} in the cache")
        return _from_cache(ref, settings, check, reason=f"{settings.endpoint} cannot be reached")
    commit = str(info.sha or "")
    if not COMMIT_SHA.match(commit):
        raise HubError(f"{settings.endpoint} gave no commit for {ref.repo_id}@{ref.revision}")
    sizes = {s.rfilename: s.size for s in (info.siblings or [])}
    plan = plan_files(ref.repo_id, sizes)
    if ref.revision != commit:
        say(f"{ref.repo_id}@{ref.revision} is commit {commit}")
    common = {"repo_id": ref.repo_id, "cache_dir": str(settings.cache_dir), "endpoint": settings.endpoint}

    from huggingface_hub import hf_hub_download, snapshot_download, try_to_load_from_cache

    with hub_errors(ref, settings, "downloading the config of"):
        # By the revision as asked, so the cache records it (refs/REV) for offline runs.
        config_path = Path(hf_hub_download(filename=CONFIG_NAME, revision=ref.revision, **common))
    if snapshot_commit(ref, config_path) != commit:
        raise HubError(f"{ref.repo_id}@{ref.revision} moved to another commit during the download; run again")
    directory = config_path.parent
    config = read_json(ref.repo_id, config_path)
    check_config(ref.repo_id, config, sizes)
    if check is not None:
        check(config)

    small = [n for n in plan.config_files if n != CONFIG_NAME] + ([plan.index] if plan.index else [])
    if small:
        with hub_errors(ref, settings, "downloading the tokenizer of"):
            snapshot_download(
                revision=commit, allow_patterns=_escape(small), max_workers=max_workers, **common
            )
    tokenizer_config = directory / "tokenizer_config.json"
    if tokenizer_config.is_file():
        found = read_json(ref.repo_id, tokenizer_config)
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
    with hub_errors(ref, settings, "downloading"):
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

    with hub_errors(ref, settings, "reading the cache for"):
        config_path = Path(
            hf_hub_download(
                ref.repo_id,
                CONFIG_NAME,
                revision=ref.revision,
                cache_dir=str(settings.cache_dir),
                local_files_only=True,
            )
        )
    commit = snapshot_commit(ref, config_path)
    directory = config_path.parent
    names = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())
    if not any(is_top_level(n) and n.endswith(".safetensors") for n in names):  # an interrupted download
        index = directory / INDEX_NAME
        shards = shards_from_index(ref.repo_id, index) if index.is_file() else ("model.safetensors",)
        _require_files(ref, directory, shards, offline=True)
    plan = plan_files(ref.repo_id, names)
    config = read_json(ref.repo_id, config_path)
    check_config(ref.repo_id, config, names)
    if check is not None:
        check(config)
    weights = shards_from_index(ref.repo_id, directory / plan.index) if plan.index else plan.weights
    files = (*plan.config_files, *([plan.index] if plan.index else []), *weights)
    _require_files(ref, directory, files, offline=True)
    return Snapshot(
        ref, commit, directory, tuple(files), from_cache=True, notes=[f"from the cache: {reason}"]
    )
