"""The store's guarantees under hostile or damaged data: nothing outside it is touched, a broken entry
affects only itself, a changed file is noticed, writers of one model take turns, and sizes derived from
untrusted numbers are bounded before anything is allocated."""

from __future__ import annotations

import errno
import json
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ondevice import store as store_module
from ondevice.errors import StoreError
from ondevice.manifest import Manifest, describe, sha256_file
from ondevice.store import Store
from tests.support.cli import invoke, one_error_line
from tests.support.gguf_samples import header_layout, put_u32, write_tiny_gguf


def add_tiny(store: Store, name: str = "tiny", quant: str = "Q8_0", label: str = "tiny test model"):
    """Store a tiny GGUF whose manifest carries its real sha256 (hashed from the partial file)."""
    written: dict[str, Path] = {}

    def write(partial: Path) -> None:
        write_tiny_gguf(partial, name=label)
        written["partial"] = partial

    def manifest_for(summary):
        digest = sha256_file(written["partial"])
        return describe(summary, name=name, quant=quant, source="test", sha256=digest)

    return store.add(name, quant, write, 10_000, manifest_for)


def plant(home: Path, name: str, stem: str, manifest: dict) -> Path:
    directory = home / "models" / name
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stem}.json"
    path.write_text(json.dumps(manifest))
    return path


# -- 1. nothing outside the store is ever deleted ----------------------------------------------------


@pytest.mark.parametrize("escape", ["../../../victim.txt", "/ABS/victim.txt", "../tiny/Q8_0.gguf"])
def test_rm_of_a_manifest_pointing_outside_its_directory_touches_nothing_there(
    isolated_home, tmp_path, escape
):
    store = Store(isolated_home)
    good = add_tiny(store)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    manifest = json.loads(good.manifest_path.read_text())
    manifest.update(name="evil", quant="X", file=escape.replace("/ABS", str(tmp_path)))
    planted = plant(isolated_home, "evil", "X", manifest)
    (broken,) = store.broken()
    assert broken.ref == "evil:X" and "not the X.gguf beside it" in broken.reason
    result = invoke("models", "rm", "evil")
    assert result.exit_code == 0, result.output
    assert victim.read_text() == "keep me" and good.path.is_file() and good.manifest_path.is_file()
    assert not planted.exists() and str(victim) not in result.output


def test_a_gguf_that_is_a_link_out_of_the_store_is_never_used_and_rm_removes_only_the_link(
    isolated_home, tmp_path
):
    store = Store(isolated_home)
    good = add_tiny(store)
    outside = tmp_path / "outside.gguf"
    good.path.rename(outside)
    good.path.symlink_to(outside)
    assert store.entries() == [] and "not a regular file" in store.broken()[0].reason
    store.remove("tiny")
    assert outside.is_file() and not good.path.is_symlink()


manifest_values = st.one_of(
    st.text(alphabet="./\\abcXQ_08~-\x00", max_size=40),
    st.sampled_from(["..", "/", "/etc/passwd", "../../victim.txt", "~/x", "Q8_0.gguf", ""]),
    st.integers(),
    st.none(),
    st.booleans(),
    st.lists(st.text(max_size=3), max_size=2),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    overrides=st.dictionaries(
        st.sampled_from(["name", "quant", "file", "sha256", "size_bytes", "kind", "extra", "junk"]),
        manifest_values,
        max_size=4,
    ),
    stem=st.sampled_from(["X", "Q8_0", "..json", "a.b"]),
)
def test_no_manifest_content_makes_the_store_touch_a_path_outside_its_entry(
    tmp_path_factory, overrides, stem
):
    root = tmp_path_factory.mktemp("prop")
    home = root / "home"
    store = Store(home)
    good = add_tiny(store, name="keep")
    victim = root / "victim.txt"
    victim.write_text("keep me")
    manifest = json.loads(good.manifest_path.read_text()) | {"name": "evil", "quant": stem}
    manifest.update(overrides)
    plant(home, "evil", stem, manifest)
    before = {p: p.read_bytes() for p in (victim, good.path, good.manifest_path)}
    entries, broken = store.scan()
    assert all(e.path.parent == home / "models" / e.manifest.name for e in entries)
    for name in {e.manifest.name for e in entries} | {b.name for b in broken}:
        if name != "keep":
            store.remove(name)
    assert {p: p.read_bytes() for p in before} == before
    assert store.entries()[0].manifest.ref == "keep:Q8_0"


# -- 12. one corrupt manifest affects only its own entry -----------------------------------------------


@pytest.mark.models
def test_a_corrupt_manifest_is_listed_as_broken_and_everything_else_works(models_home):
    junk = models_home / "models" / "junk"
    junk.mkdir(parents=True, exist_ok=True)
    (junk / "Q8_0.json").write_text("{x")
    try:
        listed = invoke("models", "list", "--json")
        assert listed.exit_code == 0, listed.output
        data = json.loads(listed.stdout)
        assert [b["ref"] for b in data["broken"]] == ["junk:Q8_0"]
        assert any(m["ref"] == "smollm2-135m-instruct:Q4_1" for m in data["models"])
        ran = invoke("run", "bundled:smollm2-135m-instruct", "hi", "--temp", "0", "-n", "2")
        assert ran.exit_code == 0, ran.output
        removed = invoke("models", "rm", "junk")
        assert removed.exit_code == 0 and not junk.exists()
    finally:
        if junk.exists():
            for path in junk.iterdir():
                path.unlink()
            junk.rmdir()


# -- 5. integrity: a changed file is noticed; writers of one model take turns ---------------------------


def test_a_replaced_file_is_refused_with_what_changed(isolated_home):
    store = Store(isolated_home)
    entry = add_tiny(store)
    original = entry.path.read_bytes()
    entry.path.write_bytes(original + b"\0" * 32)  # another size: caught on every use
    one_error_line(invoke("run", "tiny", "hi"), "tiny:Q8_0 changed since it was stored", "bytes")
    flipped = bytearray(original)
    flipped[-1] ^= 0xFF  # same size, other content: caught by its sha256 where it matters
    entry.path.write_bytes(bytes(flipped))
    one_error_line(invoke("models", "info", "tiny"), "changed since it was stored", "sha256")
    verified = invoke("models", "verify", "--json")
    assert verified.exit_code == 1
    assert json.loads(verified.stdout)["results"][0]["ok"] is False
    entry.path.write_bytes(original)
    assert invoke("models", "verify").exit_code == 0
    info = json.loads(invoke("models", "info", "tiny", "--json").stdout)
    assert info["integrity"] == "size and sha256 match the manifest"


def test_concurrent_writers_of_one_model_never_mix_file_and_manifest(isolated_home, monkeypatch):
    store = Store(isolated_home)
    real_read = store_module.read_gguf

    def slow_read(path):
        time.sleep(0.05)  # widen the window between writing the file and its manifest
        return real_read(path)

    monkeypatch.setattr(store_module, "read_gguf", slow_read)
    errors: list[BaseException] = []

    def writer(label: str) -> None:
        try:
            for _ in range(4):
                add_tiny(store, name="race", quant="F16", label=label)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"writer {i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    (entry,) = store.entries()
    store.verify(entry)  # the manifest's sha256 and size describe the file beside it


# -- 6. disk full while publishing leaves nothing half-published -------------------------------------


def test_disk_full_while_writing_the_manifest_publishes_nothing(isolated_home, monkeypatch):
    store = Store(isolated_home)

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module, "write_text_atomic", full)
    with pytest.raises(OSError):
        add_tiny(store)
    assert not (isolated_home / "models" / "tiny").exists()
    monkeypatch.undo()
    assert add_tiny(store).path.is_file()  # and the retry is not refused


def test_a_gguf_without_a_manifest_is_listed_and_removable(isolated_home):
    store = Store(isolated_home)
    entry = add_tiny(store)
    entry.manifest_path.unlink()
    (broken,) = store.broken()
    assert "has no manifest" in broken.reason
    assert invoke("models", "rm", "tiny:Q8_0").exit_code == 0
    assert not entry.path.exists()


def test_manifest_values_of_the_wrong_type_make_a_broken_entry(isolated_home):
    store = Store(isolated_home)
    entry = add_tiny(store)
    manifest = json.loads(entry.manifest_path.read_text())
    manifest["size_bytes"] = "a lot"
    entry.manifest_path.write_text(json.dumps(manifest))
    (broken,) = store.broken()
    assert "size_bytes" in broken.reason
    with pytest.raises(StoreError, match="size_bytes"):
        Manifest.from_json(entry.manifest_path.read_text(), entry.manifest_path)


# -- 2. sizes from untrusted numbers are bounded before anything is allocated -------------------------


def test_a_tiny_gguf_claiming_two_billion_layers_is_one_line_not_gigabytes(tmp_path):
    tiny = write_tiny_gguf(tmp_path / "layers.gguf")
    at = header_layout(tiny).value_at["llama.block_count"]
    tiny.write_bytes(put_u32(tiny.read_bytes(), at, 2**31))
    started = time.monotonic()
    line = one_error_line(invoke("models", "info", str(tiny), "--json"), "llama.block_count", "2147483648")
    assert time.monotonic() - started < 10, line
    one_error_line(invoke("run", str(tiny), "hi"), "llama.block_count")


def test_a_pair_profile_with_absurd_layers_is_refused_by_its_schema(isolated_home):
    profile = (Path(__file__).parent.parent / "profiles" / "models" / "smollm2-135m.toml").read_text()
    user = isolated_home / "profiles" / "models"
    user.mkdir(parents=True)
    assert "layers = 30" in profile
    (user / "smollm2-135m.toml").write_text(profile.replace("layers = 30", "layers = 2147483648"))
    one_error_line(invoke("profiles", "recommend", "smollm2-135m", "--ram", "8G"), "layers", "maximum")
