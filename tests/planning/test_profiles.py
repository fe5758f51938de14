"""Hardware and model-pair profiles: shipped data, validation, selection for described machines, CLI."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ondevice.cli import cli
from ondevice.cli.options import LoadFlags, load_options
from ondevice.measure.results import EvalRun, QualityResult
from ondevice.measure.runs import load_run, save_run
from ondevice.measure.stats import Estimate
from ondevice.planning import hardware as hardware_module
from ondevice.planning import recommend as recommend_module
from ondevice.planning.hardware import GPU, Hardware
from ondevice.planning.hardware_profiles import (
    HardwareProfile,
    choose_profile,
    hardware_profiles,
    load_hardware_profile,
    resolve_load_options,
)
from ondevice.planning.model_pairs import ModelPair, model_pairs, pairs_for
from ondevice.planning.profile_files import ProfileError, field_docs, load_file
from ondevice.planning.recommend import NOT_MEASURED_SOURCE, measured_quality, recommend
from tests.support.runs import eval_run, record

GiB = 1 << 30

INTEL_8GB = Hardware(
    os="Linux",
    os_version="Ubuntu 24.04",
    machine="x86_64",
    cpu_model="Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz",
    physical_cores=4,
    logical_cores=8,
    total_ram_bytes=int(7.7 * GiB),
    available_ram_bytes=5 * GiB,
    simd=("sse3", "avx", "avx2", "fma", "f16c"),
)
M2_16GB = Hardware(
    os="Darwin",
    os_version="14.5",
    machine="arm64",
    cpu_model="Apple M2",
    physical_cores=8,
    logical_cores=8,
    total_ram_bytes=16 * GiB,
    available_ram_bytes=10 * GiB,
    simd=("neon", "dotprod", "fp16"),
    apple_silicon=True,
    metal=True,
    gpu_offload_supported=True,
)
LINUX_4090 = Hardware(
    os="Linux",
    os_version="Ubuntu 22.04",
    machine="x86_64",
    cpu_model="AMD Ryzen 9 7950X",
    physical_cores=16,
    logical_cores=32,
    total_ram_bytes=64 * GiB,
    available_ram_bytes=60 * GiB,
    gpus=(GPU("NVIDIA GeForce RTX 4090", 24 * GiB, "550.54", 23 * GiB),),
    gpu_offload_supported=True,
)
LOW_4GB = Hardware(
    os="Linux",
    os_version="Debian 12",
    machine="aarch64",
    cpu_model="Cortex-A72",
    physical_cores=4,
    logical_cores=4,
    total_ram_bytes=int(3.8 * GiB),
    available_ram_bytes=3 * GiB,
)


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def machine(monkeypatch):
    """Make every command see a described machine instead of this one."""

    def use(hw: Hardware) -> None:
        monkeypatch.setattr(hardware_module, "detect_hardware", lambda: hw)

    return use


# --- shipped data ---------------------------------------------------------------------------------


def test_shipped_hardware_profiles_load():
    names = {p.name for p in hardware_profiles()}
    assert {"cpu-laptop", "low-memory-laptop", "apple-metal", "cuda"} <= names
    assert load_hardware_profile("cuda").gpu_layers == -1
    assert load_hardware_profile("cpu-laptop").gpu_layers == 0


def test_shipped_model_pairs_cover_the_families():
    pairs = {p.name: p for p in model_pairs()}
    wanted = {
        "smollm2-135m",
        "smollm2-360m",
        "smollm2-1.7b",
        "qwen2.5-0.5b",
        "qwen2.5-1.5b",
        "qwen3-0.6b",
        "qwen3-1.7b",
        "qwen3-4b",
        "smollm3-3b",
        "gemma-3-270m",
        "gemma-3-1b",
        "llama-3.2-1b",
        "llama-3.2-3b",
        "phi-4-mini",
        "bundled",
    }
    assert wanted <= set(pairs)
    for pair in pairs.values():
        assert pair.family and pair.instruct and pair.license and pair.ladder
        assert pair.base or "no base" in pair.notes  # an instruct-only pair says why
        assert pair.base_revision and pair.instruct_revision
        if not pair.bundled:
            for repo in filter(None, (pair.base, pair.instruct)):
                assert re.fullmatch(r"[\w.-]+/[\w.-]+", repo)
            assert pair.architecture is not None
    assert pairs["bundled"].refs() == ("bundled:gemma-3-270m", "bundled:smollm2-135m-instruct")
    assert [p.size for p in pairs_for("smollm2")] == ["135M", "360M", "1.7B"]
    assert [p.size for p in pairs_for("qwen3")] == ["0.6B", "1.7B", "4B"]


@pytest.mark.parametrize(
    ("name", "qk_norms"),
    [
        ("llama-3.2-1b", False),
        ("llama-3.2-3b", False),
        ("qwen3-0.6b", True),
        ("qwen3-1.7b", True),
        ("qwen3-4b", True),
        ("smollm3-3b", False),
        ("phi-4-mini", False),
    ],
)
def test_dense_tied_pairs_count_their_parameters_from_their_shapes(name, qk_norms):
    """Tied embeddings, q/k/v/o and gated MLP matrices (Phi's fused qkv and gate_up hold the same), two
    norms a layer (and Qwen3's per-head q/k norms), a final norm: the memory estimates start from this
    count."""
    a = pairs_for(name)[0].architecture
    assert a is not None
    attention = 2 * a.embedding * a.heads * a.head_dim + 2 * a.embedding * a.kv_heads * a.head_dim
    layer = (
        attention + 3 * a.embedding * a.feed_forward + 2 * a.embedding + (2 * a.head_dim if qk_norms else 0)
    )
    assert a.parameters == a.vocab * a.embedding + a.layers * layer + a.embedding


def test_every_field_is_documented_in_code_and_in_the_shipped_files():
    for cls in (HardwareProfile, ModelPair):
        for key, _, text, _ in field_docs(cls):
            assert text, f"{cls.__name__}.{key} has no documentation"
    for path in Path(load_hardware_profile("cpu-laptop").path).parent.glob("*.toml"):
        for line in path.read_text().splitlines():
            if re.match(r"^\w+\s*=", line) and not line.startswith("description"):
                assert "#" in line, f"{path.name}: {line!r} has no comment"


# --- validation -----------------------------------------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("threads = 4\nthread = 4\n", ["line 2", "'thread'", "unknown key", "did you mean 'threads'"]),
        ('context = 4096\nthreads = "four"\n', ["line 2", "'threads'", "expected an integer", "'four'"]),
        ("mmap = 1\n", ["line 1", "'mmap'", "expected a boolean"]),
        ('kv_cache_type = "q3"\n', ["line 1", "'kv_cache_type'", "not one of"]),
        ('memory_headroom = "lots"\n', ["line 1", "'memory_headroom'", "not a size"]),
        ("gpu_layers = -2\n", ["line 1", "'gpu_layers'", "below the minimum -1"]),
        ("threads = 4\ncontext = \n", ["line 2", "not valid TOML"]),
    ],
)
def test_bad_hardware_profile_names_file_key_and_line(tmp_path, text, fragments):
    path = _write(tmp_path, text)
    with pytest.raises(ProfileError) as error:
        load_file(HardwareProfile, path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    for fragment in fragments:
        assert fragment in message, message


def test_bad_nested_key_in_a_model_pair(tmp_path):
    text = 'family = "x"\nbase = "a/b"\ninstruct = "a/c"\n\n[architecture]\nparameters = 1\nlayers = "many"\n'
    with pytest.raises(
        ProfileError, match=r"bad\.toml, line 7: key 'architecture\.layers': expected an integer"
    ):
        load_file(ModelPair, _write(tmp_path, text))
    with pytest.raises(ProfileError, match=r"'ladder': 'Q9' is not one of"):
        load_file(ModelPair, _write(tmp_path, 'ladder = ["Q8_0", "Q9"]\n'))


def test_missing_profile_file_and_unknown_name(tmp_path):
    missing = tmp_path / "nowhere.toml"
    with pytest.raises(ProfileError, match=r"nowhere\.toml: no such profile file"):
        load_hardware_profile(str(missing))
    with pytest.raises(
        ProfileError, match=r"no hardware profile named 'cpu-lapton'; did you mean cpu-laptop"
    ):
        load_hardware_profile("cpu-lapton")


def test_bad_profile_through_the_cli_is_one_line(tmp_path):
    path = _write(tmp_path, "threads = 4\nbatchsize = 8\n")
    result = invoke("run", "bundled:smollm2-135m-instruct", "hi", "--profile", str(path))
    assert result.exit_code != 0
    (line,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert str(path) in line and "line 2" in line and "'batchsize'" in line


def test_user_profile_overrides_the_shipped_one(isolated_home):
    user = isolated_home / "profiles" / "hardware"
    user.mkdir(parents=True)
    (user / "cpu-laptop.toml").write_text('description = "mine"\ncontext = 1024\n')
    profile = load_hardware_profile("cpu-laptop")
    assert (profile.origin, profile.context, profile.description) == ("user", 1024, "mine")
    assert profile.threads == 0  # unset keys take the schema's defaults


# --- selection for described machines -------------------------------------------------------------


def test_8gb_intel_laptop_gets_the_cpu_profile():
    selection = choose_profile(INTEL_8GB)
    assert selection.profile == "cpu-laptop"
    assert "4 physical cores" in selection.reason and not selection.advice


def test_16gb_m2_gets_apple_metal():
    selection = choose_profile(M2_16GB)
    assert selection.profile == "apple-metal" and "Apple M2" in selection.reason


def test_m2_without_a_metal_build_is_told_how_to_rebuild():
    selection = choose_profile(Hardware(**{**M2_16GB.__dict__, "gpu_offload_supported": False}))
    assert selection.profile == "cpu-laptop"
    assert any('CMAKE_ARGS="-DGGML_METAL=on -DGGML_RPC=on"' in line for line in selection.advice)


def test_linux_with_24gb_nvidia_gets_cuda():
    selection = choose_profile(LINUX_4090)
    assert selection.profile == "cuda" and "RTX 4090" in selection.reason


def test_nvidia_gpu_with_a_cpu_build_is_told_how_to_rebuild():
    selection = choose_profile(Hardware(**{**LINUX_4090.__dict__, "gpu_offload_supported": False}))
    assert selection.profile == "cpu-laptop"
    assert any('CMAKE_ARGS="-DGGML_CUDA=on -DGGML_RPC=on"' in line for line in selection.advice)


def test_4gb_box_gets_the_low_memory_profile():
    selection = choose_profile(LOW_4GB)
    assert selection.profile == "low-memory-laptop" and "only" in selection.reason


# --- options: explicit flags beat the profile -------------------------------------------------------


def test_explicit_options_beat_the_profile():
    profile = load_hardware_profile("cuda")
    options = resolve_load_options(profile, {"n_ctx": 1024, "n_gpu_layers": 0, "use_mmap": None})
    assert (options.n_ctx, options.n_gpu_layers, options.n_batch, options.use_mmap) == (1024, 0, 512, True)
    assert resolve_load_options(profile, {}).n_ctx == profile.context
    low = resolve_load_options(load_hardware_profile("low-memory-laptop"), {})
    assert (low.n_ubatch, low.kv_cache_type, low.flash_attn, low.use_mlock) == (256, "q8_0", "auto", False)


def test_load_options_pick_the_machines_profile_and_keep_given_flags(machine):
    machine(LOW_4GB)
    seen: list[LoadFlags] = []

    @click.command()
    @load_options()
    def probe(load: LoadFlags) -> None:
        seen.append(load)

    mapped_cuda = ["--threads", "3", "--mmap", "--profile", "cuda", "--force"]
    for args in (["--threads", "3", "--no-mmap"], mapped_cuda):
        assert CliRunner().invoke(probe, args, catch_exceptions=False).exit_code == 0
    plan = seen[0].plan()
    assert plan.profile.name == "low-memory-laptop"
    assert (plan.options.n_ctx, plan.options.n_threads, plan.options.n_batch) == (2048, 3, 256)
    assert plan.options.use_mmap is False
    named = seen[1].plan()
    assert named.profile.name == "cuda" and named.reason == "named with --profile" and named.force
    assert named.options.use_mmap is True and named.options.n_threads == 3
    assert seen[0].plan(use_mmap=True, n_ctx=512).options.use_mmap is True  # the command's own settings win


def test_load_options_without_leaves_those_flags_out():
    @click.command()
    @load_options(without=("threads", "no_mmap"))
    def probe(load: LoadFlags) -> None:
        assert "n_threads" not in load.explicit and "use_mmap" not in load.explicit

    assert CliRunner().invoke(probe, ["--ctx", "64"], catch_exceptions=False).exit_code == 0
    refused = CliRunner().invoke(probe, ["--threads", "2"])
    assert refused.exit_code == 2 and "No such option '--threads'" in refused.output
    with pytest.raises(ValueError, match="no loading option"):
        load_options(without=("thread",))


# --- CLI ----------------------------------------------------------------------------------------------


def test_profiles_list_shows_both_kinds(machine):
    machine(INTEL_8GB)
    data = json.loads(invoke("profiles", "list", "--json").output)
    assert data["picked"]["profile"] == "cpu-laptop"
    assert {p["name"] for p in data["hardware"]} >= {"cuda", "apple-metal"}
    assert "qwen2.5-0.5b" in {p["name"] for p in data["models"]}
    text = invoke("profiles", "list").output
    assert "Hardware profiles" in text and "Model pairs" in text


def test_profiles_show_and_schema():
    data = json.loads(invoke("profiles", "show", "llama-3.2-3b", "--json").output)
    assert data["kind"] == "models" and data["instruct"] == "meta-llama/Llama-3.2-3B-Instruct"
    schema = json.loads(invoke("profiles", "show", "--schema", "--kind", "hardware", "--json").output)
    assert {row["key"] for row in schema["hardware"]} >= {"threads", "kv_cache_type", "memory_headroom"}
    assert "no profile named" in invoke("profiles", "show", "nothing").output


def test_profiles_detect_reads_a_described_machine(tmp_path):
    described = tmp_path / "m2.json"
    described.write_text(json.dumps(M2_16GB.as_dict()))
    data = json.loads(invoke("profiles", "detect", "--hardware", str(described), "--json").output)
    assert data["profile"]["name"] == "apple-metal"
    assert data["hardware"]["cpu_model"] == "Apple M2"


def test_doctor_names_profile_cores_and_ram(machine):
    machine(Hardware(**{**LINUX_4090.__dict__, "gpu_offload_supported": False}))
    result = invoke("doctor")
    assert result.exit_code == 0, result.output
    assert "cpu-laptop" in result.output and "16 physical cores" in result.output
    assert "-DGGML_CUDA=on" in result.output and "threads 0 (one per physical core)" in result.output
    data = json.loads(invoke("doctor", "--json").output)
    assert data["hardware"]["gpus"][0]["name"] == "NVIDIA GeForce RTX 4090"


def test_doctor_on_this_machine():
    data = json.loads(invoke("doctor", "--json").output)
    assert data["profile"]["name"] in {"cpu-laptop", "low-memory-laptop", "cuda", "apple-metal"}
    assert data["hardware"]["physical_cores"] >= 1 and data["hardware"]["total_ram_bytes"] > 0


def test_recommend_ranks_levels_that_fit(machine):
    machine(INTEL_8GB)
    result = invoke("profiles", "recommend", "llama3.2", "--ram", "4G", "--json")
    data = json.loads(result.output)
    levels = data["levels"]
    assert data["quality"].startswith("typical") and data["ram_bytes"] == 4 * 10**9  # as sizes are printed
    fitting = [row for row in levels if row["fits"]]
    assert fitting and [r["rank"] for r in levels] == list(range(1, len(levels) + 1))
    assert all(r["max_context"] >= 2048 for r in fitting)
    assert not levels[-1]["fits"] or len(fitting) == len(levels)
    # The 3B at Q8_0 (3.4 GB of weights) cannot leave 2048 tokens of context in 3 GB.
    q8_3b = next(r for r in levels if r["pair"] == "llama-3.2-3b" and r["quant"] == "Q8_0")
    assert not q8_3b["fits"]
    assert fitting[0]["pair"] == "llama-3.2-3b"
    assert "does not fit" in invoke("profiles", "recommend", "llama3.2", "--ram", "4G").output


@pytest.mark.models
def test_recommend_ranks_by_a_run_that_ondevice_eval_wrote(isolated_home):
    """The whole way: quantize, `ondevice eval` saves its run, `profiles recommend` reads its KLD."""
    name = "smollm2-135m-instruct"  # the bundled store name matches the pair's instruct repo
    assert invoke("convert", "bundled:" + name, "--outtype", "f16").exit_code == 0
    assert invoke("quantize", f"{name}:F16", "--levels", "q8_0").exit_code == 0
    evaluated = invoke("eval", f"{name}:Q8_0", "--reference", f"{name}:F16", "--ctx", "128", "--chunks", "2")
    assert evaluated.exit_code == 0, evaluated.output
    (saved,) = list((isolated_home / "runs").glob("eval-*.json"))
    run = load_run(saved)
    (quality,) = run.quality
    assert quality.kld is not None
    shown = json.loads(invoke("profiles", "recommend", "smollm2-135m", "--ram", "8G", "--json").stdout)
    q8 = next(r for r in shown["levels"] if r["quant"] == "Q8_0")
    assert q8["quality_loss"] == pytest.approx(quality.kld.value)
    assert q8["quality_source"] == f"measured: mean KLD {quality.kld.value:.4f} (run {run.id})"
    assert next(r for r in shown["levels"] if r["quant"] == "Q4_K_M")["quality_source"].startswith("typical")


def test_recommend_skips_runs_it_cannot_read(isolated_home):
    runs = isolated_home / "runs"
    runs.mkdir(parents=True)
    guessed = {"kind": "eval", "results": [{"model": "hf:Qwen/Qwen2.5-0.5B-Instruct:Q4_K_M", "kld": 0.031}]}
    (runs / "eval-1.json").write_text(json.dumps(guessed))  # not a run ondevice wrote: not read
    (runs / "eval-2.json").write_text("{broken")
    levels, _ = recommend("qwen2.5-0.5b", 8 * GiB)
    assert all(r.quality_source.startswith("typical") for r in levels)


def save_klds(klds: dict[str, float], repo: str = "meta-llama/Llama-3.2-1B-Instruct") -> EvalRun:
    """An eval run, as `ondevice eval` saves it, with these mean KLDs of `repo`'s quantizations."""
    run = eval_run(
        record(f"hf:{repo}:F16", "F16", 2471.0, 16.0),
        12.0,
        [
            QualityResult(
                record(f"hf:{repo}:{q}", q, 800.0, 5.0), 2040, Estimate(12.5, 0.3), kld=Estimate(k, 0.001)
            )
            for q, k in klds.items()
        ],
    )
    save_run(run)
    return run


def rows_of(levels: list, pair: str) -> dict[str, object]:
    return {r.quant: r for r in levels if r.pair == pair}


def test_recommend_lists_a_measured_imatrix_file_beside_its_level(isolated_home):
    run = save_klds({"Q4_K_M": 0.090, "Q4_K_M-imat": 0.050})
    assert measured_quality()[("llama-3.2-1b", "Q4_K_M-imat")][0] == pytest.approx(0.050)
    levels, _ = recommend("llama3.2", 8 * GiB)
    one_b = rows_of(levels, "llama-3.2-1b")
    plain, imat = one_b["Q4_K_M"], one_b["Q4_K_M-imat"]
    assert (plain.quality_loss, imat.quality_loss) == (pytest.approx(0.090), pytest.approx(0.050))
    assert imat.quality_source == f"measured: mean KLD 0.0500 (run {run.id})"
    # The same file size as its level, so the same memory; the smaller loss ranks first.
    assert (imat.bits_per_weight, imat.weights_bytes, imat.needed_bytes, imat.max_context) == (
        plain.bits_per_weight,
        plain.weights_bytes,
        plain.needed_bytes,
        plain.max_context,
    )
    assert imat.rank < plain.rank
    assert "Q4_K_M-imat" not in rows_of(levels, "llama-3.2-3b")  # measured on the 1B only


def test_measured_quality_keeps_tagged_and_iquant_names_as_quant_name_writes_them(isolated_home):
    save_klds({"q4_k_m-IMAT": 0.05, "Q4_K_M-imat-custom": 0.04, "iq4_xs": 0.08, "MXFP9": 0.1})
    assert sorted(q for _, q in measured_quality()) == ["IQ4_XS", "Q4_K_M-imat", "Q4_K_M-imat-custom"]


def test_recommend_ranks_an_imatrix_file_below_its_level_when_it_measures_worse(isolated_home):
    save_klds({"Q4_K_M": 0.050, "Q4_K_M-imat": 0.070})
    one_b = rows_of(recommend("llama3.2", 8 * GiB)[0], "llama-3.2-1b")
    assert one_b["Q4_K_M"].rank < one_b["Q4_K_M-imat"].rank


@pytest.fixture
def iquant_ladders(monkeypatch):
    """llama3.2's pairs with two i-quant levels on their ladders."""
    pairs = [replace(p, ladder=(*p.ladder, "IQ4_XS", "IQ3_M")) for p in pairs_for("llama3.2")]
    monkeypatch.setattr(recommend_module, "pairs_for", lambda family: pairs)


def test_recommend_ranks_a_measured_iquant_and_lists_an_unmeasured_one_without_a_figure(
    isolated_home, iquant_ladders
):
    save_klds({"IQ4_XS": 0.080})
    levels, _ = recommend("llama3.2", 8 * GiB)
    one_b = rows_of(levels, "llama-3.2-1b")
    iq4, iq3 = one_b["IQ4_XS"], one_b["IQ3_M"]
    assert iq4.quality_loss == pytest.approx(0.080) and iq4.quality_source.startswith("measured")
    assert iq4.bits_per_weight == 4.25 and iq4.weights_bytes == int(iq4.parameters * 4.25 / 8)
    # IQ4_XS counts as usable (4 bits and more): among the 1B's usable levels by its figure (0.08 is
    # below Q4_K_M's 0.1754), ahead of the lossy Q3_K_M.
    assert one_b["Q5_K_M"].rank < iq4.rank < one_b["Q4_K_M"].rank < one_b["Q3_K_M"].rank
    assert iq3.quality_loss is None and iq3.quality_source == NOT_MEASURED_SOURCE
    assert iq3.bits_per_weight == 3.66 and iq3.fits
    # No figure: after its model's lossy rows that have one (the 1B's lossy rows come last of all).
    assert one_b["Q3_K_M"].rank < one_b["Q2_K"].rank < iq3.rank == len(levels)
    three_b = rows_of(levels, "llama-3.2-3b")
    assert three_b["IQ4_XS"].quality_loss is None and three_b["IQ3_M"].quality_loss is None
    # Unmeasured but usable: last of the 3B's usable rows, still ahead of the 1B's.
    assert three_b["IQ4_XS"].rank == three_b["Q4_K_M"].rank + 1 < one_b["Q8_0"].rank


def test_recommend_cli_shows_measured_and_unmeasured_iquants(isolated_home, iquant_ladders):
    save_klds({"IQ4_XS": 0.080, "Q4_K_M-imat": 0.050})
    data = json.loads(invoke("profiles", "recommend", "llama3.2", "--ram", "8G", "--json").stdout)
    shown = {(r["pair"], r["quant"]): r for r in data["levels"]}
    assert shown[("llama-3.2-1b", "Q4_K_M-imat")]["quality_loss"] == pytest.approx(0.050)
    assert shown[("llama-3.2-1b", "IQ4_XS")]["quality_loss"] == pytest.approx(0.080)
    unmeasured = shown[("llama-3.2-1b", "IQ3_M")]
    assert unmeasured["quality_loss"] is None and unmeasured["quality_source"] == NOT_MEASURED_SOURCE
    assert "not measured" in data["quality"]
    table = invoke("profiles", "recommend", "llama3.2", "--ram", "8G").output.splitlines()

    def row(quant: str) -> str:
        return next(line for line in table if " llama-3.2-1b " in line and f" {quant} " in line)

    assert "0.0500 (measured)" in row("Q4_K_M-imat") and "0.0800 (measured)" in row("IQ4_XS")
    assert "not measured" in row("IQ3_M") and "0.1754" in row("Q4_K_M")


def test_recommend_unknown_family_is_one_line():
    result = invoke("profiles", "recommend", "gpt5")
    assert result.exit_code != 0 and "no model family or pair named 'gpt5'" in result.output
