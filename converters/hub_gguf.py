"""Ready-made GGUF files from a Hugging Face Hub repo: `hf:ORG/REPO[@REV][:QUANT]`, as llama.cpp's `-hf`
and Ollama's `hf.co/ORG/REPO:QUANT` take them.

`list_repo(ref)` lists the repo at the revision (the commit it resolves to is recorded) and groups its
GGUF files by quantization level, read case-insensitively from each file name; a model split in shards
(`...-00001-of-00003.gguf`) is one choice. `choose(listing, quant)` picks the level asked for, Q4_K_M
(llama.cpp's default) when none is, else the level the repo has closest in typical bits per weight,
and says so. `pull(ref)` downloads the chosen files through huggingface_hub into its cache (resumable;
HF_TOKEN, HF_HUB_OFFLINE and HF_ENDPOINT honoured), copies each into the store while checking its
sha256 against the one the Hub lists (its LFS oid), validates them with our GGUF reader and publishes
them with a manifest through `Store.add` / `Store.add_split`. Nothing is trusted: a name that escapes
the directory, a repo without GGUF files, a hash that differs, a file that is not a valid GGUF are one
clear line, and nothing enters the store.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ondevice.atomic import check_free_space
from ondevice.errors import GGUFError
from ondevice.gguf_summary import GGUFSummary
from ondevice.kinds import Kind
from ondevice.manifest import Manifest, Shard, check_name, describe, imatrix_from_header
from ondevice.progress import Phase, Progress, ProgressFn, Unit
from ondevice.quant_names import base_level, file_quant_name, made_with_imatrix
from ondevice.store import Store, StoreEntry
from ondevice.units import format_bytes

from .gguf_levels import (
    DEFAULT_LEVEL,
    GGUFChoice,
    RepoFile,
    RepoListing,
    choose,
    group_files,
)
from .hub import HubSettings, hub_errors, snapshot_commit
from .hub_rules import (
    COMMIT_SHA,
    PREFIX,
    HubError,
    HubRef,
    HubUnreachableError,
    check_file_name,
    parse_hub_ref,
)

__all__ = [
    "DEFAULT_LEVEL",
    "GGUFChoice",
    "GGUFPull",
    "RepoListing",
    "choose",
    "list_repo",
    "pull",
    "store_name",
]

_COPY_BLOCK = 8 << 20

Notify = Callable[[str], None]


@dataclass
class GGUFPull:
    """What `pull` put in the store (or found there), and what it said along the way."""

    entry: StoreEntry
    listing: RepoListing
    choice: GGUFChoice
    downloaded_bytes: int = 0
    already_stored: bool = False
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        m = self.entry.manifest
        return {
            "ref": m.ref,
            "path": str(self.entry.path),
            "paths": [str(p) for p in self.entry.paths],
            "repo": self.listing.ref.repo_id,
            "revision": self.listing.commit,
            "files": self.choice.names,
            "quant": m.quant,
            "kind": m.kind.value,
            "kind_reason": m.kind_reason,
            "size_bytes": m.size_bytes,
            "bits_per_weight": m.bits_per_weight,
            "sha256": m.sha256,
            "downloaded_bytes": self.downloaded_bytes,
            "already_stored": self.already_stored,
            "from_cache": self.listing.from_cache,
            "notes": self.notes,
        }


# -- listing -----------------------------------------------------------------------------------


def list_repo(
    ref: HubRef | str, *, settings: HubSettings | None = None, notify: Notify | None = None
) -> RepoListing:
    """The repo's GGUF models at the revision, from the Hub (or its cache when offline or unreachable)."""
    ref = parse_hub_ref(ref) if isinstance(ref, str) else ref
    settings = settings or HubSettings.from_env()
    say = notify or (lambda _line: None)
    if settings.offline:
        return _list_cache(ref, settings, "HF_HUB_OFFLINE is set")
    from huggingface_hub import HfApi

    try:
        with hub_errors(ref, settings, "listing"):
            info = HfApi(endpoint=settings.endpoint).model_info(
                ref.repo_id, revision=ref.revision, files_metadata=True
            )
    except HubUnreachableError:
        say(f"cannot reach {settings.endpoint}; looking for {ref.repo_id}@{ref.revision} in the cache")
        return _list_cache(ref, settings, f"{settings.endpoint} cannot be reached")
    commit = str(info.sha or "")
    if not COMMIT_SHA.match(commit):
        raise HubError(f"{settings.endpoint} gave no commit for {ref.repo_id}@{ref.revision}")
    files = []
    for sibling in info.siblings or []:
        name = check_file_name(ref.repo_id, sibling.rfilename)
        lfs = sibling.lfs
        sha = str(getattr(lfs, "sha256", "") or "") if lfs is not None else ""
        size = (
            int(getattr(lfs, "size", 0) or sibling.size or 0) if lfs is not None else int(sibling.size or 0)
        )
        files.append(RepoFile(name, size, sha))
    choices = _gguf_choices(ref, group_files(ref.repo_id, files))
    for choice in choices:
        for f in choice.files:
            if not re.fullmatch(r"[0-9a-f]{64}", f.sha256):
                raise HubError(f"{ref.repo_id} lists {f.name} without a sha256 (not an LFS file): refused")
    return RepoListing(ref, commit, choices)


def _gguf_choices(ref: HubRef, choices: tuple[GGUFChoice, ...]) -> tuple[GGUFChoice, ...]:
    if not choices:
        raise HubError(
            f"{ref.repo_id}@{ref.revision} has no GGUF files; a safetensors checkpoint is converted with "
            f"`ondevice convert {PREFIX}{ref.repo_id}`"
        )
    return choices


def _repo_cache(settings: HubSettings, repo_id: str) -> Path:
    return settings.cache_dir / ("models--" + repo_id.replace("/", "--"))


def _list_cache(ref: HubRef, settings: HubSettings, reason: str) -> RepoListing:
    """The GGUF files the Hugging Face cache holds for the revision; each blob is named by its sha256."""
    repo_dir = _repo_cache(settings, ref.repo_id)
    commit = ref.revision
    if not COMMIT_SHA.match(commit):
        try:
            commit = (repo_dir / "refs" / ref.revision).read_text(encoding="utf-8").strip()
        except OSError:
            commit = ""
    snapshot = repo_dir / "snapshots" / commit
    if not COMMIT_SHA.match(commit) or not snapshot.is_dir():
        raise HubError(
            f"{ref.repo_id}@{ref.revision} is not in the Hugging Face cache ({settings.cache_dir}) and "
            f"{reason}: download it once online"
        )
    files = []
    for path in sorted(snapshot.rglob("*.gguf")):
        name = path.relative_to(snapshot).as_posix()
        blob = os.readlink(path).rsplit("/", 1)[-1] if path.is_symlink() else ""
        if path.is_file() and re.fullmatch(r"[0-9a-f]{64}", blob):
            files.append(RepoFile(name, path.stat().st_size, blob))
    choices = _gguf_choices(ref, group_files(ref.repo_id, files))
    return RepoListing(ref, commit, choices, from_cache=True, notes=(f"from the cache: {reason}",))


# -- pulling -----------------------------------------------------------------------------------


def store_name(repo_id: str) -> str:
    """The store name for a GGUF repo: its name without the `-GGUF` that such repos carry."""
    name = re.sub(r"[-_.]gguf$", "", repo_id.split("/", 1)[1], flags=re.IGNORECASE)
    return check_name(name or repo_id.split("/", 1)[1])


class _Mismatch(Exception):
    def __init__(self, file: RepoFile, digest: str) -> None:
        super().__init__(file.name)
        self.file, self.digest = file, digest


def pull(
    ref: HubRef | str,
    *,
    store: Store | None = None,
    name: str | None = None,
    declared_kind: Kind | None = None,
    declared_by: str = "",
    settings: HubSettings | None = None,
    progress: ProgressFn | None = None,
    notify: Notify | None = None,
) -> GGUFPull:
    """Download the GGUF model `ref` names into the Hugging Face cache, verify it, and add it to the store."""
    ref = parse_hub_ref(ref) if isinstance(ref, str) else ref
    store = store or Store()
    settings = settings or HubSettings.from_env()
    say = notify or (lambda _line: None)
    notes: list[str] = []

    def tell(line: str) -> None:
        notes.append(line)
        say(line)

    listing = list_repo(ref, settings=settings, notify=tell)
    for line in listing.notes:
        tell(line)
    choice, why = choose(listing, ref.quant)
    if why:
        tell(why)
    if listing.commit != ref.revision:
        tell(f"{ref.repo_id}@{ref.revision} is commit {listing.commit}")
    target = check_name(name) if name else store_name(ref.repo_id)
    files = choice.names
    task = f"pull {PREFIX}{ref.repo_id}@{listing.commit[:12]}:{choice.level or '?'}"

    for entry in store.entries():  # the same repo, commit and files: nothing to fetch
        m = entry.manifest
        if (
            m.name == target
            and m.extra.get("repo") == ref.repo_id
            and m.revision == listing.commit
            and m.extra.get("files") == files
            and m.sha256 == choice.files[0].sha256
        ):
            tell(f"{m.ref} is already in the store from {ref.repo_id}@{listing.commit[:12]}")
            return GGUFPull(entry, listing, choice, already_stored=True, notes=notes)

    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    common = {"repo_id": ref.repo_id, "cache_dir": str(settings.cache_dir)}
    cached = {
        f.name: isinstance(try_to_load_from_cache(filename=f.name, revision=listing.commit, **common), str)
        for f in choice.files
    }
    missing = sum(f.size for f in choice.files if not cached[f.name])
    if missing:
        if listing.from_cache:
            raise HubError(
                f"the cache lacks part of {files[0]} and the Hub cannot be asked; download it online"
            )
        settings.cache_dir.mkdir(parents=True, exist_ok=True)
        store.models.mkdir(parents=True, exist_ok=True)
        same_disk = os.stat(settings.cache_dir).st_dev == os.stat(store.models).st_dev
        check_free_space(
            settings.cache_dir, missing + (choice.size if same_disk else 0), f"downloading {', '.join(files)}"
        )
        tell(f"downloading {len(files)} file(s), {format_bytes(missing)}, into {settings.cache_dir}")

    def fetch(f: RepoFile, force: bool = False) -> Path:
        if progress is not None:  # huggingface_hub draws its own download bars
            progress(Progress(task, f"downloading {f.name}", phase=Phase.HANDED_OFF))
        with hub_errors(ref, settings, f"downloading {f.name} of"):
            if listing.from_cache:
                path = hf_hub_download(
                    filename=f.name, revision=listing.commit, local_files_only=True, **common
                )
            else:  # by the revision as asked, so the cache records it (refs/REV) for offline runs
                path = hf_hub_download(
                    filename=f.name,
                    revision=ref.revision,
                    endpoint=settings.endpoint,
                    force_download=force,
                    **common,
                )
        path = Path(path)
        if snapshot_commit(ref, path) != listing.commit:
            raise HubError(
                f"{ref.repo_id}@{ref.revision} moved to another commit during the download; run again"
            )
        return path

    paths = {f.name: fetch(f) for f in choice.files}
    retried = False
    while True:
        try:
            entry = _add(
                store, target, choice, paths, listing, ref, declared_kind, declared_by, task, progress
            )
            break
        except GGUFError as exc:  # named after the partial file in the store; the repo's name says more
            reason = str(exc).split(": ", 1)[-1]
            raise HubError(
                f"{ref.repo_id}: {', '.join(files)} is not a valid GGUF model ({reason}); nothing was added "
                "to the store"
            ) from None
        except _Mismatch as bad:
            # A copy the cache held from before may be damaged: fetch it once more from the Hub.
            if retried or not cached[bad.file.name] or listing.from_cache:
                raise HubError(
                    f"{ref.repo_id}: {bad.file.name} has sha256 {bad.digest[:16]}…, but the Hub lists "
                    f"{bad.file.sha256[:16]}…; refused, nothing was added to the store"
                ) from None
            retried = True
            tell(f"the cached {bad.file.name} does not match the Hub's sha256; downloading it again")
            paths[bad.file.name] = fetch(bad.file, force=True)
    if made_with_imatrix(entry.manifest.quant):
        tell(f"{files[0]} was quantized with an importance matrix: stored as {entry.manifest.ref}")
    return GGUFPull(entry, listing, choice, downloaded_bytes=missing, notes=notes)


def _add(
    store: Store,
    target: str,
    choice: GGUFChoice,
    paths: dict[str, Path],
    listing: RepoListing,
    ref: HubRef,
    declared_kind: Kind | None,
    declared_by: str,
    task: str,
    progress: ProgressFn | None,
) -> StoreEntry:
    """Copy the cached files into the store, hashing each on the way (refused unless it matches)."""
    digests: dict[str, str] = {}
    done_before = 0

    def writer(f: RepoFile, offset: int) -> Callable[[Path], None]:
        def write(partial: Path) -> None:
            digest = hashlib.sha256()
            done = 0
            with open(paths[f.name], "rb") as source, open(partial, "wb") as out:
                while block := source.read(_COPY_BLOCK):
                    digest.update(block)
                    out.write(block)
                    done += len(block)
                    if progress is not None:
                        progress(
                            Progress(task, f"verifying {f.name}", offset + done, choice.size, Unit.BYTES)
                        )
            if digest.hexdigest() != f.sha256:
                raise _Mismatch(f, digest.hexdigest())
            digests[f.name] = digest.hexdigest()

        return write

    writes = []
    for f in choice.files:
        writes.append(writer(f, done_before))
        done_before += f.size

    def manifest_for(summary: GGUFSummary) -> Manifest:
        by = declared_by or "the caller"
        manifest = describe(
            summary,
            name=target,
            quant=quant,
            source=f"{PREFIX}{ref.repo_id}@{listing.commit}",
            sha256=digests[choice.files[0].name],
            declared_kind=declared_kind,
            declared_by=by,
            revision=listing.commit,
        )
        manifest.extra = {
            "repo": ref.repo_id,
            "requested_revision": ref.revision,
            "requested_quant": ref.quant,
            "files": choice.names,
            "level": base_level(quant),
        }
        if len(choice.files) > 1:
            manifest.shards = [Shard("", digests[f.name], f.size) for f in choice.files]
        manifest.imatrix = imatrix_from_header(summary.metadata)  # the verified copy's header
        return manifest

    quant = _quant_name(choice, paths[choice.files[0].name])
    if len(writes) == 1:
        return store.add(target, quant, writes[0], choice.size, manifest_for)
    return store.add_split(target, quant, writes, choice.size, manifest_for)


def _quant_name(choice: GGUFChoice, first: Path) -> str:
    """The store name of the pulled file, read from its (first shard's) header before it is stored: the
    level its name states, else the file type the header declares, tagged -imat when the publisher
    quantized it with an importance matrix."""
    from ondevice.gguf_file import read_gguf

    try:
        header = read_gguf(first)
    except GGUFError:
        # Not yet checked against the Hub's sha256: a damaged cached copy is fetched again when the copy
        # into the store finds the mismatch, and an invalid file is refused by the store's own read.
        return choice.level or "unknown"
    return file_quant_name(choice.level or header.file_type_name or "unknown", header.metadata)
