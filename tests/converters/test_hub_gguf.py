"""Ready-made GGUF files from the Hub, for real: huggingface_hub downloads from the local Hub server
(HF_ENDPOINT) repos built here from small gguf-py files and from the bundled models (a split one made
with gguf-py's writer), into a temp HF_HOME; the files land in the temp store and llama.cpp runs them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ondevice.converters.gguf_levels import RepoFile, RepoListing, choose, group_files, level_of
from ondevice.converters.hub_gguf import store_name
from ondevice.converters.hub_rules import HubError, parse_hub_ref
from ondevice.gguf_file import read_gguf
from ondevice.gguf_split import read_gguf_model
from ondevice.kinds import Kind
from ondevice.manifest import ImatrixRecord, imatrix_from_header, sha256_file
from ondevice.records import from_dict
from ondevice.refs import resolve
from ondevice.store import Store
from tests.support.cli import invoke, one_error_line
from tests.support.gguf_samples import write_tiny_gguf
from tests.support.gguf_split import split_gguf
from tests.support.hub_fixtures import go_offline

SHA = "a" * 64


def tiny_levels(tmp_path: Path, levels: list[str], stem: str = "Tiny-1B") -> dict[str, bytes]:
    """A GGUF repo: one small valid file per level (distinct bytes), plus a README and a projector."""
    files = {"README.md": b"# tiny\n"}
    for level in levels:
        path = write_tiny_gguf(tmp_path / f"{level}.gguf", name=f"tiny {level}")
        files[f"{stem}-{level}.gguf"] = path.read_bytes()
    files[f"mmproj-{stem}-f16.gguf"] = files[f"{stem}-{levels[0]}.gguf"]  # never picked
    return files


def gguf_downloads(server) -> list[str]:
    return [
        r.path.rsplit("/", 1)[-1] for r in server.requests if r.method == "GET" and r.path.endswith(".gguf")
    ]


# -- names, levels and choices (no network) --------------------------------------------------


def test_references_take_a_quant_and_levels_are_read_from_names():
    ref = parse_hub_ref("hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF@v1:q4_k_m")
    assert (ref.repo_id, ref.revision, ref.quant) == ("Qwen/Qwen2.5-0.5B-Instruct-GGUF", "v1", "q4_k_m")
    assert parse_hub_ref("hf:org/x:Q8_0").revision == "main" and parse_hub_ref("org/x").quant is None
    with pytest.raises(HubError, match="not a quantization level"):
        parse_hub_ref("hf:org/x:../Q4")
    assert level_of("qwen2.5-0.5b-instruct-q4_k_m.gguf") == "Q4_K_M"
    assert level_of("gemma-3-1b-it-BF16.gguf") == "BF16" and level_of("model-fp16.gguf") == "F16"
    assert level_of("Q5_K_M/big-00001-of-00002.gguf") == "Q5_K_M" and level_of("model.gguf") is None
    assert store_name("Qwen/Qwen2.5-0.5B-Instruct-GGUF") == "Qwen2.5-0.5B-Instruct"


def test_choosing_by_level_default_and_closest():
    files = [RepoFile(n, 10, SHA) for n in ("m-Q8_0.gguf", "m-q4_1.gguf", "m-Q2_K.gguf", "mmproj-m-f16.gguf")]
    files += [RepoFile(f"m-IQ4_XS-0000{k}-of-00002.gguf", 5, SHA) for k in (1, 2)]
    repo = RepoListing(parse_hub_ref("org/m-GGUF"), "c" * 40, group_files("org/m-GGUF", files))
    assert repo.levels == ["Q8_0", "Q4_1", "IQ4_XS", "Q2_K"]  # best first; the projector left out
    assert choose(repo, "q8_0") == (repo.choices[0], None)
    picked, why = choose(repo)  # no Q4_K_M: the closest in bits per weight
    assert (
        picked.level == "Q4_1"
        and why == "org/m-GGUF has no Q4_K_M (the default); taking Q4_1, the closest level it has"
    )
    split, _ = choose(repo, "IQ4_XS")
    assert (
        split.names == ["m-IQ4_XS-00001-of-00002.gguf", "m-IQ4_XS-00002-of-00002.gguf"] and split.size == 10
    )
    with pytest.raises(
        HubError, match=r"'Q9_X' is not a quantization level llama\.cpp makes; org/m-GGUF has: Q8_0"
    ):
        choose(repo, "Q9_X")
    with pytest.raises(HubError, match="would escape"):
        group_files("org/m", [RepoFile("../evil-Q4_K_M.gguf", 1, SHA)])


# -- models pull hf:ORG/REPO[:QUANT] -------------------------------------------------------------


def test_pull_by_level_default_closest_list_and_twice(hub, hf_home, tmp_path, isolated_home):
    files = tiny_levels(tmp_path, ["Q8_0", "Q4_K_M", "Q4_0"])
    sha = hub.add("org/Tiny-1B-GGUF", files)

    listed = invoke("models", "pull", "hf:org/Tiny-1B-GGUF", "--list", "--json")
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.stdout)
    assert data["revision"] == sha
    assert [(r["quant"], r["default"]) for r in data["levels"]] == [
        ("Q8_0", False),
        ("Q4_K_M", True),
        ("Q4_0", False),
    ]
    assert data["levels"][0]["size_bytes"] == len(files["Tiny-1B-Q8_0.gguf"])
    table = invoke("models", "pull", "hf:org/Tiny-1B-GGUF", "--list")
    assert "Q4_K_M" in table.stdout and "default" in table.stdout
    assert gguf_downloads(hub) == []

    default = invoke("models", "pull", "hf:org/Tiny-1B-GGUF", "--json")  # Q4_K_M
    assert default.exit_code == 0, default.output
    pulled = json.loads(default.stdout)
    path = Path(pulled["path"])
    assert (
        path == Store().model_dir("Tiny-1B") / "Q4_K_M.gguf"
        and path.read_bytes() == files["Tiny-1B-Q4_K_M.gguf"]
    )
    manifest = Store().find("Tiny-1B", "Q4_K_M").manifest
    assert (manifest.source, manifest.revision, manifest.sha256) == (
        f"hf:org/Tiny-1B-GGUF@{sha}",
        sha,
        sha256_file(path),
    )
    assert manifest.extra["files"] == ["Tiny-1B-Q4_K_M.gguf"] and manifest.extra["repo"] == "org/Tiny-1B-GGUF"
    assert manifest.kind == Kind.BASE and manifest.bits_per_weight == pytest.approx(
        read_gguf(path).bits_per_weight, abs=1e-3
    )

    by_level = invoke("models", "pull", f"hf:org/Tiny-1B-GGUF@{sha}:q8_0")
    assert by_level.exit_code == 0, by_level.output
    assert Store().find("Tiny-1B", "Q8_0").path.read_bytes() == files["Tiny-1B-Q8_0.gguf"]
    closest = invoke("models", "pull", "hf:org/Tiny-1B-GGUF:Q4_K_S", "--name", "tiny")
    assert closest.exit_code == 0, closest.output
    assert "has no Q4_K_S; taking Q4_0, the closest level it has" in closest.stderr
    assert Store().find("tiny", "Q4_0").manifest.extra["requested_quant"] == "Q4_K_S"
    assert gguf_downloads(hub) == ["Tiny-1B-Q4_K_M.gguf", "Tiny-1B-Q8_0.gguf", "Tiny-1B-Q4_0.gguf"]

    # Pulled again: nothing is downloaded or written; removed from the store, the Hub's cache serves it.
    mtime = path.stat().st_mtime_ns
    again = invoke("models", "pull", "hf:org/Tiny-1B-GGUF:Q4_K_M")
    assert (
        again.exit_code == 0 and "already in the store" in again.stderr and path.stat().st_mtime_ns == mtime
    )
    Store().remove("Tiny-1B", "Q4_K_M")
    cached = invoke("models", "pull", "hf:org/Tiny-1B-GGUF")
    assert cached.exit_code == 0, cached.output
    assert len(gguf_downloads(hub)) == 3 and path.is_file()


IMATRIX_KV = {
    "quantize.imatrix.file": "imatrix.gguf",
    "quantize.imatrix.dataset": ["calibration_datav3.txt", "wiki.train.raw"],
    "quantize.imatrix.entries_count": 196,
    "quantize.imatrix.chunks_count": 125,
}


def test_a_file_quantized_with_an_importance_matrix_is_stored_as_such(hub, hf_home, tmp_path):
    files = tiny_levels(tmp_path, ["Q8_0"])  # plain
    imat = write_tiny_gguf(tmp_path / "imat.gguf", name="tiny imat", extra_kv=IMATRIX_KV)
    files["Tiny-1B-Q4_K_M.gguf"] = imat.read_bytes()
    hub.add("org/Tiny-1B-GGUF", files)

    pulled = invoke("models", "pull", "hf:org/Tiny-1B-GGUF", "--json")
    assert pulled.exit_code == 0, pulled.output
    data = json.loads(pulled.stdout)
    assert data["quant"] == "Q4_K_M-imat" and Path(data["path"]).name == "Q4_K_M-imat.gguf"
    assert "quantized with an importance matrix: stored as Tiny-1B:Q4_K_M-imat" in pulled.stderr
    entry = Store().find("Tiny-1B", "Q4_K_M-imat")
    assert entry.manifest.extra["level"] == "Q4_K_M"
    # What the header says, and nothing it does not (the matrix's sha256 and chunk size).
    assert entry.manifest.imatrix == ImatrixRecord(
        datasets=["calibration_datav3.txt", "wiki.train.raw"],
        chunk_count=125,
        entries=196,
        file="imatrix.gguf",
    )
    assert (entry.manifest.imatrix.sha256, entry.manifest.imatrix.chunk_size) == ("", 0)

    # Asked for by its level, as the repo names it: found, not downloaded again.
    again = invoke("models", "pull", "hf:org/Tiny-1B-GGUF:Q4_K_M")
    assert again.exit_code == 0 and "Tiny-1B:Q4_K_M-imat is already in the store" in again.stderr
    assert gguf_downloads(hub) == ["Tiny-1B-Q4_K_M.gguf"]
    for ref in ("Tiny-1B:Q4_K_M", "Tiny-1B:q4_k_m-IMAT", "hf:org/Tiny-1B-GGUF:Q4_K_M", "hf:org/Tiny-1B-GGUF"):
        assert resolve(ref).path == entry.path, ref

    info = invoke("models", "info", "Tiny-1B:Q4_K_M", "--json")
    assert info.exit_code == 0, info.output
    assert json.loads(info.stdout)["quant"] == "Q4_K_M-imat"
    assert json.loads(info.stdout)["imatrix"]["datasets"] == IMATRIX_KV["quantize.imatrix.dataset"]
    human = invoke("models", "info", "hf:org/Tiny-1B-GGUF:Q4_K_M-imat").stdout
    line = "196 weights, 125 chunks of calibration_datav3.txt, wiki.train.raw, file imatrix.gguf"
    assert line in " ".join(human.split()) and "sha256 …" not in human

    # A plain file stays plain; a tagged name never falls back to it.
    plain = invoke("models", "pull", "hf:org/Tiny-1B-GGUF:Q8_0", "--json")
    assert plain.exit_code == 0 and json.loads(plain.stdout)["quant"] == "Q8_0"
    assert Store().find("Tiny-1B", "Q8_0").manifest.imatrix is None
    assert "imatrix" not in json.loads(invoke("models", "info", "Tiny-1B:Q8_0", "--json").stdout)
    assert "has no Q8_0-imat file; it has: Q4_K_M-imat, Q8_0" in one_error_line(
        invoke("models", "info", "Tiny-1B:Q8_0-imat")
    )
    # Two tagged files of the level: the bare level names neither.
    _copy_entry(entry.manifest_path, "Q4_K_M-custom")
    assert "has no Q4_K_M file; it has: Q4_K_M-custom, Q4_K_M-imat, Q8_0" in one_error_line(
        invoke("models", "info", "Tiny-1B:Q4_K_M")
    )
    removed = invoke("models", "rm", "Tiny-1B:Q4_K_M-imat")
    assert removed.exit_code == 0 and not entry.path.exists()


def test_the_imatrix_record_reads_headers_and_older_manifests():
    one = imatrix_from_header({"quantize.imatrix.entries_count": 7, "quantize.imatrix.dataset": "wiki"})
    assert one == ImatrixRecord(datasets=["wiki"], entries=7)
    assert imatrix_from_header({"quantize.imatrix.file": "m.dat"}) is None  # entries_count is the mark
    older = {"sha256": SHA, "datasets": ["x"], "chunk_count": 2, "chunk_size": 512, "entries": 3}
    assert from_dict(ImatrixRecord, older) == ImatrixRecord(SHA, ["x"], 2, 512, 3, file="")


def _copy_entry(manifest_path: Path, quant: str) -> None:
    """Another entry of the same model with the same bytes, under `quant`."""
    data = json.loads(manifest_path.read_text())
    gguf = manifest_path.with_name(data["file"])
    data.update(quant=quant, file=f"{quant}.gguf")
    gguf.with_name(data["file"]).write_bytes(gguf.read_bytes())
    manifest_path.with_name(f"{quant}.json").write_text(json.dumps(data))


def test_a_split_file_quantized_with_a_matrix_is_stored_as_such(hub, hf_home, tmp_path):
    whole = write_tiny_gguf(tmp_path / "whole.gguf", n_layers=2, extra_kv=IMATRIX_KV)
    shards = split_gguf(whole, tmp_path / "split", 2, stem="Tiny-1B-IQ4_XS")
    hub.add("org/Tiny-1B-GGUF", {p.name: p.read_bytes() for p in shards})
    pulled = invoke("models", "pull", "hf:org/Tiny-1B-GGUF:IQ4_XS", "--json")
    assert pulled.exit_code == 0, pulled.output
    assert [Path(p).name for p in json.loads(pulled.stdout)["paths"]] == [
        f"IQ4_XS-imat-0000{k}-of-00002.gguf" for k in (1, 2)
    ]
    entry = Store().find("Tiny-1B", "IQ4_XS-imat")
    assert entry.manifest.imatrix is not None and entry.manifest.imatrix.entries == 196
    Store().verify(entry)
    again = invoke("models", "pull", "hf:org/Tiny-1B-GGUF:IQ4_XS")
    assert "already in the store" in again.stderr and len(gguf_downloads(hub)) == 2


def test_offline_pull_from_the_cache(hub, hf_home, tmp_path, monkeypatch):
    files = tiny_levels(tmp_path, ["Q4_K_M", "Q8_0"])
    sha = hub.add("org/Tiny-1B-GGUF", files)
    assert invoke("models", "pull", "hf:org/Tiny-1B-GGUF").exit_code == 0
    Store().remove("Tiny-1B")
    go_offline(monkeypatch)
    hub.requests.clear()
    offline = invoke("models", "pull", "hf:org/Tiny-1B-GGUF", "--json")
    assert offline.exit_code == 0, offline.output
    assert json.loads(offline.stdout)["revision"] == sha and "from the cache" in offline.stderr
    assert Store().find("Tiny-1B", "Q4_K_M").manifest.sha256 == sha256_file(Store().find("Tiny-1B").path)
    # Offline, the levels are those in the cache: Q8_0 was never fetched, so the closest cached one is taken.
    other = invoke("models", "pull", "hf:org/Tiny-1B-GGUF:Q8_0")
    assert other.exit_code == 0 and "has no Q8_0; taking Q4_K_M" in other.stderr
    assert hub.requests == []


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"README.md": b"x", "model.safetensors": b"x", "config.json": b"{}"}, "has no GGUF files"),
        ({"../evil-Q4_K_M.gguf": b"GGUF"}, "which would escape the download directory"),
        ({"x-Q4_K_M.gguf": b"GGUF not really"}, "x-Q4_K_M.gguf"),
    ],
    ids=["no-gguf", "escaping-name", "not-a-gguf"],
)
def test_refusals_are_one_line_and_store_nothing(hub, files, expected):
    hub.add("org/bad", files)
    assert expected in one_error_line(invoke("models", "pull", "hf:org/bad"))
    assert Store().entries() == [] and Store().broken() == []


def test_bytes_that_differ_from_the_listed_sha256_are_refused(hub, hf_home, tmp_path):
    files = tiny_levels(tmp_path, ["Q4_K_M"])
    hub.add("org/Tiny-1B-GGUF", files)
    hub.served["Tiny-1B-Q4_K_M.gguf"] = write_tiny_gguf(tmp_path / "other.gguf", name="other").read_bytes()
    line = one_error_line(invoke("models", "pull", "hf:org/Tiny-1B-GGUF"))
    assert "sha256" in line and "nothing was added to the store" in line, line
    assert Store().entries() == [] and not Store().models.joinpath("Tiny-1B").exists()


def test_an_interrupted_download_is_resumed(hub, hf_home, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1024)
    files = tiny_levels(tmp_path, ["Q4_K_M"])
    hub.add("org/Tiny-1B-GGUF", files)
    hub.drop("Tiny-1B-Q4_K_M.gguf", after=3 * 1024 + 100, then=0)
    result = invoke("models", "pull", "hf:org/Tiny-1B-GGUF")
    assert result.exit_code == 0, result.output
    ranges = [r.range for r in hub.requests if r.method == "GET" and r.path.endswith("Q4_K_M.gguf")]
    assert ranges == [None, f"bytes={3 * 1024}-"]
    assert Store().find("Tiny-1B").path.read_bytes() == files["Tiny-1B-Q4_K_M.gguf"]


# -- real models: a split repo, run, and a family --------------------------------------------


@pytest.fixture(scope="module")
def smol_shards(smol, tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("smol-split")
    paths = split_gguf(smol.path, out, 3, stem="SmolLM2-135M-Instruct-Q4_1")
    return {p.name: p.read_bytes() for p in paths}


@pytest.mark.models
def test_a_split_repo_is_pulled_whole_runs_and_is_removed_whole(hub, hf_home, smol, smol_shards):
    hub.add("org/SmolLM2-135M-Instruct-GGUF", smol_shards)
    result = invoke("models", "pull", "hf:org/SmolLM2-135M-Instruct-GGUF:Q4_1", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    directory = Store().model_dir("SmolLM2-135M-Instruct")
    names = [f"Q4_1-0000{k}-of-00003.gguf" for k in (1, 2, 3)]
    assert sorted(p.name for p in directory.iterdir()) == sorted([*names, "Q4_1.json"])
    assert [Path(p).name for p in data["paths"]] == names and Path(data["path"]).name == names[0]
    entry = Store().find("SmolLM2-135M-Instruct", "Q4_1")
    assert [s.sha256 for s in entry.manifest.shards] == [sha256_file(directory / n) for n in names]
    assert entry.manifest.size_bytes == sum(len(b) for b in smol_shards.values())
    assert entry.manifest.kind == Kind.INSTRUCT and read_gguf_model(entry.path).parameter_count > 100e6
    Store().verify(entry)

    def answer(ref: str) -> str:
        run = invoke(
            "run", ref, "What is the capital of France?",
            "--temperature", "0", "-n", "12", "--extra-bufts", "off", "--json",
        )  # fmt: skip
        assert run.exit_code == 0, run.output
        return json.loads(run.stdout)["text"]

    # llama.cpp loads the three shards as one model: greedy text is the unsplit file's.
    text = answer("SmolLM2-135M-Instruct:Q4_1")
    assert text.strip() and text == answer(str(smol.path))
    assert answer("hf:org/SmolLM2-135M-Instruct-GGUF:Q4_1") == text  # as it was pulled, as llama.cpp's -hf

    removed = invoke("models", "rm", "SmolLM2-135M-Instruct:Q4_1", "--json")
    assert removed.exit_code == 0, removed.output
    assert sorted(Path(p).name for p in json.loads(removed.stdout)["removed"]) == names
    assert not directory.exists()


@pytest.mark.models
def test_pull_a_family_through_gguf_repos(hub, hf_home, isolated_home, smol, gemma):
    hub.add("org/gemma-3-270m-GGUF", {"gemma-3-270m-Q4_K_M.gguf": gemma.path.read_bytes()})
    hub.add("org/SmolLM2-135M-Instruct-GGUF", {"SmolLM2-135M-Instruct-Q4_1.gguf": smol.path.read_bytes()})
    directory = isolated_home / "profiles" / "models"
    directory.mkdir(parents=True)
    (directory / "ggufpair.toml").write_text(
        'family = "ggufpair"\nbase = "org/gemma-3-270m"\ninstruct = "org/SmolLM2-135M-Instruct"\n'
        'base_gguf = "org/gemma-3-270m-GGUF"\ninstruct_gguf = "org/SmolLM2-135M-Instruct-GGUF"\n',
        encoding="utf-8",
    )
    shown = invoke("profiles", "show", "ggufpair", "--json")
    assert json.loads(shown.stdout)["pull"] == {
        "base": "GGUF files from org/gemma-3-270m-GGUF",
        "instruct": "GGUF files from org/SmolLM2-135M-Instruct-GGUF",
    }
    result = invoke("models", "pull", "ggufpair", "--json")
    assert result.exit_code == 0, result.output
    files = json.loads(result.stdout)["files"]
    assert [(f["role"], f["ref"], f["kind"]) for f in files] == [
        ("base", "gemma-3-270m:Q4_K_M", "base"),
        ("instruct", "SmolLM2-135M-Instruct:Q4_1", "instruct"),  # no Q4_K_M there: the closest
    ]
    for f in files:
        manifest = Store().find(*f["ref"].split(":")).manifest
        assert "ggufpair" in manifest.kind_reason and manifest.sha256 == sha256_file(Path(f["path"]))
    assert Store().find("gemma-3-270m").manifest.sha256 == sha256_file(gemma.path)

    # --convert takes the safetensors route, which these test repos do not have.
    line = one_error_line(invoke("models", "pull", "ggufpair", "--convert", "--only", "base"))
    assert "no model repo org/gemma-3-270m" in line


def test_shipped_profiles_say_which_route_each_model_takes():
    qwen = json.loads(invoke("profiles", "show", "qwen2.5-0.5b", "--json").stdout)
    assert qwen["instruct_gguf"] == "Qwen/Qwen2.5-0.5B-Instruct-GGUF"
    assert qwen["pull"] == {
        "base": "converted from Qwen/Qwen2.5-0.5B",
        "instruct": "GGUF files from Qwen/Qwen2.5-0.5B-Instruct-GGUF",
    }
    assert json.loads(invoke("profiles", "show", "smollm2-135m", "--json").stdout)["pull"][
        "instruct"
    ].startswith("converted")
