"""ondevice.store and ondevice.atomic: files are published whole or not at all, references find them."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from ondevice import atomic
from ondevice.atomic import atomic_path, check_free_space, partial_path, remove_stale_partials
from ondevice.errors import GGUFError, StoreError, UnknownReferenceError
from ondevice.gguf_file import read_gguf
from ondevice.gguf_summary import GGUFSummary
from ondevice.kinds import Kind
from ondevice.manifest import Manifest, check_name, describe, sha256_file
from ondevice.store import Store
from ondevice.units import format_bytes
from tests.support.gguf_samples import write_tiny_gguf
from tests.support.processes import dead_pid

TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"


def tiny_writer(**kwargs) -> Callable[[Path], None]:
    def write(partial: Path) -> None:
        write_tiny_gguf(partial, **kwargs)

    return write


SHA = "cd" * 32


def manifest_for(summary: GGUFSummary) -> Manifest:
    return describe(summary, name="ignored", quant=None, source="test", sha256=SHA)


def add(store: Store, name: str = "tiny", quant: str = "Q8_0", **kwargs):
    return store.add(name, quant, tiny_writer(**kwargs), 10_000, manifest_for)


def files_in(directory: Path) -> set[str]:
    """The files in a model's directory; none when a failed first write removed the directory too."""
    return {p.name for p in directory.iterdir()} if directory.exists() else set()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "home")


# --- adding ---------------------------------------------------------------------------------------


def test_add_publishes_file_and_manifest(store: Store) -> None:
    entry = add(store, chat_template=TEMPLATE)
    directory = store.models / "tiny"
    assert entry.path == directory / "Q8_0.gguf"
    assert files_in(directory) == {"Q8_0.gguf", "Q8_0.json"}
    assert read_gguf(entry.path).chat_template == TEMPLATE
    manifest = entry.manifest
    assert (manifest.name, manifest.quant, manifest.file, manifest.ref) == (
        "tiny",
        "Q8_0",
        "Q8_0.gguf",
        "tiny:Q8_0",
    )
    assert manifest.sha256 == SHA
    assert manifest.size_bytes == entry.path.stat().st_size
    on_disk = Manifest.from_json((directory / "Q8_0.json").read_text(encoding="utf-8"), directory)
    assert on_disk == manifest


def test_store_root_defaults_to_ondevice_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONDEVICE_HOME", str(tmp_path / "elsewhere"))
    assert Store().models == tmp_path / "elsewhere" / "models"


@pytest.mark.parametrize("name", ["../evil", "a/b", "", ".hidden", "-flag", "a b", "x" * 129])
def test_invalid_names_are_refused(store: Store, tmp_path: Path, name: str) -> None:
    called = []
    with pytest.raises(StoreError, match="invalid model name"):
        store.add(name, "Q8_0", called.append, 10_000, manifest_for)
    assert called == []
    assert not (tmp_path / "evil").exists()
    assert not store.models.exists()


@pytest.mark.parametrize("quant", ["../Q8_0", "q/8", "", ".Q8_0"])
def test_invalid_quant_names_are_refused(store: Store, quant: str) -> None:
    with pytest.raises(StoreError, match="invalid quantization name"):
        store.add("tiny", quant, tiny_writer(), 10_000, manifest_for)
    assert not store.models.exists()


@pytest.mark.parametrize("name", ["gemma-3-270m", "SmolLM2_135M.v2", "a"])
def test_valid_names(name: str) -> None:
    assert check_name(name) == name


def test_writer_that_raises_leaves_nothing(store: Store) -> None:
    def write(partial: Path) -> None:
        partial.write_bytes(b"GGUF" + bytes(1000))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.add("tiny", "Q8_0", write, 10_000, manifest_for)
    assert files_in(store.models / "tiny") == set()
    assert store.entries() == []


def test_writer_producing_invalid_gguf_is_refused(store: Store) -> None:
    def write(partial: Path) -> None:
        data = write_tiny_gguf(partial).read_bytes()
        partial.write_bytes(data[: len(data) // 2])  # truncated: tensor data runs past the end

    with pytest.raises(GGUFError):
        store.add("tiny", "Q8_0", write, 10_000, manifest_for)
    assert files_in(store.models / "tiny") == set()


def test_writer_that_writes_nothing_is_refused(store: Store) -> None:
    with pytest.raises(GGUFError, match="no such file"):
        store.add("tiny", "Q8_0", lambda partial: None, 10_000, manifest_for)
    assert files_in(store.models / "tiny") == set()


def test_failed_rewrite_keeps_the_previous_file(store: Store) -> None:
    first = add(store)
    before = first.path.read_bytes()
    with pytest.raises(GGUFError):
        store.add("tiny", "Q8_0", lambda partial: partial.write_bytes(b"junk"), 10_000, manifest_for)
    assert first.path.read_bytes() == before
    assert files_in(first.path.parent) == {"Q8_0.gguf", "Q8_0.json"}
    assert store.find("tiny").manifest == first.manifest


def test_two_adds_of_the_same_file_end_with_one_complete_file(store: Store) -> None:
    add(store)
    second = add(store, chat_template=TEMPLATE)
    assert files_in(second.path.parent) == {"Q8_0.gguf", "Q8_0.json"}
    assert read_gguf(second.path).chat_template == TEMPLATE
    [entry] = store.entries()
    assert entry.manifest.has_chat_template
    assert entry.manifest.size_bytes == second.path.stat().st_size


def test_add_refuses_when_disk_is_short(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=1_000))
    called = []
    with pytest.raises(StoreError, match=r"adding tiny:Q8_0 needs 10.0 kB, 1.0 kB free"):
        store.add("tiny", "Q8_0", called.append, 10_000, manifest_for)
    assert called == []
    assert files_in(store.models / "tiny") == set()


def test_add_removes_dead_writers_partials(store: Store) -> None:
    directory = store.models / "tiny"
    directory.mkdir(parents=True)
    stale = directory / f".Q8_0.gguf.{dead_pid()}.partial"
    stale.write_bytes(b"half a file")
    add(store)
    assert files_in(directory) == {"Q8_0.gguf", "Q8_0.json"}


# --- finding and removing -------------------------------------------------------------------------


def test_find_by_name(store: Store) -> None:
    added = add(store)
    assert store.find("tiny") == added
    assert store.names() == ["tiny"]


def test_find_by_name_and_quant_is_case_insensitive(store: Store) -> None:
    add(store, quant="Q8_0")
    f16 = add(store, quant="F16")
    assert store.find("tiny", "f16") == f16
    assert store.find("tiny", "Q8_0").manifest.quant == "Q8_0"


def test_ambiguous_name_lists_the_refs(store: Store) -> None:
    add(store, quant="Q8_0")
    add(store, quant="F16")
    with pytest.raises(UnknownReferenceError) as info:
        store.find("tiny")
    assert "tiny:F16" in str(info.value)
    assert "tiny:Q8_0" in str(info.value)


def test_unknown_quant_lists_what_exists(store: Store) -> None:
    add(store, quant="Q8_0")
    with pytest.raises(UnknownReferenceError, match="tiny has no Q4_K_M file; it has: Q8_0"):
        store.find("tiny", "Q4_K_M")


def test_unknown_name(store: Store) -> None:
    with pytest.raises(UnknownReferenceError, match="no model named 'nope'"):
        store.find("nope")
    add(store)
    with pytest.raises(UnknownReferenceError, match="no model named 'nope'"):
        store.find("nope")


def test_entry_without_its_gguf_is_not_listed(store: Store) -> None:
    entry = add(store)
    entry.path.unlink()
    assert store.entries() == []


def test_remove_one_quant(store: Store) -> None:
    q8 = add(store, quant="Q8_0")
    f16 = add(store, quant="F16")
    assert store.remove("tiny", "q8_0") == [q8.path]
    assert files_in(q8.path.parent) == {"F16.gguf", "F16.json"}
    assert store.find("tiny") == f16


def test_remove_all_quants(store: Store) -> None:
    q8 = add(store, quant="Q8_0")
    f16 = add(store, quant="F16")
    assert sorted(store.remove("tiny")) == sorted([q8.path, f16.path])
    assert not (store.models / "tiny").exists()
    assert store.entries() == []


def test_remove_unknown(store: Store) -> None:
    with pytest.raises(UnknownReferenceError):
        store.remove("nope")
    add(store)
    with pytest.raises(UnknownReferenceError):
        store.remove("tiny", "F16")
    assert len(store.entries()) == 1


def test_remove_while_the_model_is_being_written_is_refused_and_the_writer_finishes(store: Store) -> None:
    """Writers and rm of one model take turns under its lock: rm does not wait forever behind a
    long write, it says so; the writer's partial file is never touched."""
    add(store, quant="Q8_0")
    refused: list[str] = []

    def write_while_removing(partial: Path) -> None:
        write_tiny_gguf(partial)
        with pytest.raises(StoreError, match="being written") as caught:
            store.remove("tiny", "Q8_0")
        refused.append(str(caught.value))
        assert partial.is_file()

    entry = store.add("tiny", "F16", write_while_removing, 10_000, manifest_for)
    assert entry.path.is_file() and refused
    store.remove("tiny", "Q8_0")
    assert [e.manifest.ref for e in store.entries()] == ["tiny:F16"]


# --- manifests ------------------------------------------------------------------------------------


def sample_manifest() -> Manifest:
    return Manifest(
        name="tiny",
        quant="Q4_K_M",
        file="Q4_K_M.gguf",
        source="hf:org/repo",
        sha256="ab" * 32,
        architecture="llama",
        kind=Kind.INSTRUCT,
        kind_reason="declared by a test",
        parameter_count=135_000_000,
        size_bytes=98_362_432,
        bits_per_weight=5.82,
        context_length=8192,
        has_chat_template=True,
        revision="0123abc",
        created="2025-01-01T00:00:00Z",
        extra={"upstream": "org/repo", "levels": [1, 2]},
    )


def test_manifest_json_round_trip(tmp_path: Path) -> None:
    manifest = sample_manifest()
    text = manifest.to_json()
    assert json.loads(text)["extra"] == {"upstream": "org/repo", "levels": [1, 2]}
    assert Manifest.from_json(text, tmp_path) == manifest


def test_manifest_unknown_keys_are_refused(tmp_path: Path) -> None:
    data = json.loads(sample_manifest().to_json())
    data["colour"] = "red"
    with pytest.raises(StoreError, match=r"unknown manifest keys \['colour'\]"):
        Manifest.from_json(json.dumps(data), tmp_path / "Q4_K_M.json")


@pytest.mark.parametrize("text", ["{not json", "[]", "5", "null", '{"name": "tiny"}'])
def test_unreadable_manifest(tmp_path: Path, text: str) -> None:
    origin = tmp_path / "Q4_K_M.json"
    with pytest.raises(StoreError, match="unreadable manifest") as info:
        Manifest.from_json(text, origin)
    assert str(info.value).startswith(str(origin))


# --- describe: kind and facts ---------------------------------------------------------------------


def test_describe_facts(tmp_path: Path) -> None:
    summary = read_gguf(write_tiny_gguf(tmp_path / "m.gguf"))
    manifest = describe(summary, name="tiny", quant=None, source="./m.gguf", sha256="00" * 32, revision="r1")
    assert manifest.quant == "F16"  # from general.file_type when no quant is given
    assert manifest.architecture == "llama"
    assert manifest.parameter_count == summary.parameter_count > 0
    assert manifest.size_bytes == (tmp_path / "m.gguf").stat().st_size
    assert manifest.context_length == 128
    assert manifest.revision == "r1"
    assert not manifest.has_chat_template


def test_describe_chat_template_means_instruct(tmp_path: Path) -> None:
    summary = read_gguf(write_tiny_gguf(tmp_path / "m.gguf", chat_template=TEMPLATE))
    manifest = describe(summary, name="t", quant="Q8_0", source="s", sha256="")
    assert (manifest.kind, manifest.has_chat_template) == ("instruct", True)
    assert "chat template" in manifest.kind_reason


def test_describe_instruct_name_means_instruct(tmp_path: Path) -> None:
    summary = read_gguf(write_tiny_gguf(tmp_path / "m.gguf"))
    named = dataclasses.replace(
        summary, metadata={**summary.metadata, "general.name": "SmolLM2 135M Instruct"}
    )
    manifest = describe(named, name="t", quant="Q8_0", source="s", sha256="")
    assert manifest.kind == "instruct"
    assert "general.name" in manifest.kind_reason
    assert "SmolLM2 135M Instruct" in manifest.kind_reason


def test_describe_otherwise_base(tmp_path: Path) -> None:
    summary = read_gguf(write_tiny_gguf(tmp_path / "m.gguf"))
    manifest = describe(summary, name="t", quant="Q8_0", source="s", sha256="")
    assert manifest.kind == "base"
    assert "no chat template" in manifest.kind_reason


def test_describe_declared_kind_wins(tmp_path: Path) -> None:
    summary = read_gguf(write_tiny_gguf(tmp_path / "m.gguf", chat_template=TEMPLATE))
    manifest = describe(
        summary,
        name="t",
        quant="Q8_0",
        source="s",
        sha256="",
        declared_kind=Kind.BASE,
        declared_by="a profile",
    )
    assert manifest.kind == "base"
    assert manifest.kind_reason == "declared by a profile"


# --- atomic writes --------------------------------------------------------------------------------


def test_atomic_path_renames_on_success(tmp_path: Path) -> None:
    final = tmp_path / "sub" / "out.bin"
    with atomic_path(final) as partial:
        assert partial.parent == final.parent
        assert partial.name == f".out.bin.{os.getpid()}.partial"
        partial.write_bytes(b"complete")
        assert not final.exists()
    assert final.read_bytes() == b"complete"
    assert files_in(final.parent) == {"out.bin"}


def test_atomic_path_on_error_keeps_the_old_file_and_no_partial(tmp_path: Path) -> None:
    final = tmp_path / "out.bin"
    final.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(final) as partial:
        partial.write_bytes(b"new but half")
        raise RuntimeError("interrupted")
    assert final.read_bytes() == b"old"
    assert files_in(tmp_path) == {"out.bin"}


def test_atomic_path_refuses_when_nothing_was_written(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="nothing was written"), atomic_path(tmp_path / "out.bin"):
        pass
    assert files_in(tmp_path) == set()


def test_sha256_file(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_bytes(b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_remove_stale_partials_keeps_live_writers(tmp_path: Path) -> None:
    dead = tmp_path / f".Q8_0.gguf.{dead_pid()}.partial"
    live = tmp_path / f".F16.gguf.{os.getpid()}.partial"
    other = tmp_path / "Q8_0.gguf"
    for path in (dead, live, other):
        path.write_bytes(b"x")
    assert partial_path(tmp_path / "F16.gguf") == live
    assert remove_stale_partials(tmp_path) == [dead]
    assert files_in(tmp_path) == {live.name, other.name}


def test_remove_stale_partials_without_directory(tmp_path: Path) -> None:
    assert remove_stale_partials(tmp_path / "missing") == []


def test_check_free_space_refuses_with_both_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    probed = []

    def disk_usage(path: Path) -> SimpleNamespace:
        probed.append(Path(path))
        return SimpleNamespace(free=1_400_000_000)

    monkeypatch.setattr(atomic.shutil, "disk_usage", disk_usage)
    with pytest.raises(StoreError) as info:
        check_free_space(tmp_path / "not" / "yet", 2_100_000_000, "converting x")
    assert str(info.value) == f"converting x needs 2.1 GB, 1.4 GB free in {tmp_path}"
    assert probed == [tmp_path]  # the nearest existing parent
    check_free_space(tmp_path, 1_400_000_000, "converting x")  # exactly enough is enough


# --- units ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (1536, "1.5 kB"),
        (253_113_024, "253.1 MB"),
        (2_100_000_000, "2.1 GB"),
        (7.5e12, "7.5 TB"),
        (3e15, "3000.0 TB"),
        (-2048, "-2.0 kB"),
    ],
)
def test_format_bytes(n: float, text: str) -> None:
    assert format_bytes(n) == text
