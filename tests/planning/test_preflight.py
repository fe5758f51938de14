"""Memory pre-flight: the estimate against measured worker memory, and refusals with the numbers."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from ondevice.cli import cli
from ondevice.planning import hardware as hardware_module
from ondevice.planning.hardware import GPU, Hardware
from ondevice.planning.preflight import (
    InsufficientMemoryError,
    ModelShape,
    check_memory,
    combined,
    estimate_for_model,
    require_fit,
)
from ondevice.runtime.engine import WorkerModel, single_turn
from ondevice.runtime.protocol import GenerationParams, LoadOptions
from ondevice.units import format_bytes, parse_size
from tests.support.models import GEMMA, SMOL

MiB, GiB = 1 << 20, 1 << 30

ONE_GB_BOX = Hardware(
    os="Linux",
    os_version="Debian 12",
    machine="x86_64",
    cpu_model="tiny",
    physical_cores=2,
    logical_cores=2,
    total_ram_bytes=1 * GiB,
    available_ram_bytes=900 * MiB,
)
CUDA_BOX = Hardware(
    os="Linux",
    os_version="Ubuntu 22.04",
    machine="x86_64",
    cpu_model="x",
    physical_cores=8,
    logical_cores=16,
    total_ram_bytes=32 * GiB,
    available_ram_bytes=30 * GiB,
    gpus=(GPU("NVIDIA T4", 1 * GiB, "535", 1 * GiB),),
    gpu_offload_supported=True,
)


def test_parse_size_reads_sizes_the_way_they_are_printed():
    # G, GB: powers of 1000, as format_bytes prints them; GiB: powers of 1024.
    assert parse_size("8G") == 8 * 10**9 and format_bytes(parse_size("4G")) == "4.0 GB"
    assert parse_size("1.5 GB") == 1_500_000_000
    assert parse_size("512M") == 512 * 10**6
    assert parse_size("2GiB") == 2 * GiB and parse_size("512MiB") == 512 * MiB
    assert parse_size(1000) == 1000 and parse_size("1000") == 1000
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")
    with pytest.raises(ValueError, match="no unit"):
        parse_size("4", bare="refuse")


def test_kv_cache_follows_llama_cpp(smol, gemma):
    # 30 layers x 3 KV heads x (64 + 64) x 4096 cells x 2 bytes; llama.cpp's log says 90 MiB.
    assert estimate_for_model(smol.summary, LoadOptions(n_ctx=4096)).kv_cache_bytes == 90 * MiB
    # Gemma 3: 15 of 18 layers slide over 512 tokens, but the cache is full size (swa_full): 72 MiB.
    shape = ModelShape.from_summary(gemma.summary)
    assert sum(shape.swa_layers) == 15 and shape.sliding_window == 512
    assert estimate_for_model(gemma.summary, LoadOptions(n_ctx=4096)).kv_cache_bytes == 72 * MiB
    # The context is rounded up to 256 cells, as llama.cpp does.
    assert estimate_for_model(gemma.summary, LoadOptions(n_ctx=1000)).n_ctx == 1024


@pytest.mark.models
@pytest.mark.parametrize("which", ["smol", "gemma"])
@pytest.mark.parametrize("n_ctx", [512, 4096])
def test_estimate_within_15_percent_of_measured_rss(request, which, n_ctx):
    model = request.getfixturevalue(which)
    options = LoadOptions(n_ctx=n_ctx, use_mmap=False)  # mmapped pages would make RSS lie
    estimate = estimate_for_model(model.summary, options)
    with WorkerModel(model.path, options, label=model.display_name) as worker:
        # A prompt batch first: on a CPU where llama.cpp's AMX buffers crash, the worker is loaded again
        # without them (and AMX keeps a second copy of tied embeddings, which the estimate leaves out).
        worker.bench("pp", 8)
        loaded = worker.rss_bytes()
        assert (
            abs(estimate.kv_cache_bytes - worker.facts.kv_cache_bytes) <= 0.01 * worker.facts.kv_cache_bytes
        )
        assert abs(estimate.weights_bytes - worker.facts.model_buffer_bytes) <= 0.01 * estimate.weights_bytes
        request_ = single_turn(
            model.kind, bool(worker.facts.chat_template), "Why is the sky blue? " * 20, GenerationParams(8, 0)
        )
        worker.generate(request_)
        used = worker.rss_bytes()
    for measured in (loaded, used):
        error = (estimate.total_bytes - measured) / measured
        print(f"{which} ctx {n_ctx}: estimate {estimate.total_bytes / MiB:.0f}, RSS {measured / MiB:.0f} MiB")
        assert abs(error) <= 0.15, (estimate.breakdown(), measured)


def test_one_gb_machine_refuses_gemma_at_a_large_context(gemma):
    estimate = estimate_for_model(gemma.summary, LoadOptions(n_ctx=32768), ONE_GB_BOX)
    check = check_memory(estimate, ONE_GB_BOX, 256 * MiB)
    assert not check.fits
    with pytest.raises(InsufficientMemoryError) as error:
        require_fit(check, "gemma")
    message = str(error.value)
    assert "needs 9" in message and "available after 268.4 MB headroom" in message
    require_fit(check, "gemma", force=True)  # --force: no error


def test_offloaded_part_is_checked_against_vram(gemma):
    options = LoadOptions(n_ctx=32768, n_gpu_layers=-1)
    estimate = estimate_for_model(gemma.summary, options, CUDA_BOX)
    # Everything but the input embeddings goes to the GPU, and its compute buffers are real there.
    assert estimate.device_bytes > estimate.kv_cache_bytes
    assert estimate.device_bytes > estimate.host_bytes
    check = check_memory(estimate, CUDA_BOX, GiB)
    assert check.fits_ram and not check.fits_vram
    assert "of GPU memory" in check.summary()
    cpu_only = estimate_for_model(gemma.summary, options, ONE_GB_BOX)  # no GPU: the layers stay put
    assert cpu_only.device_bytes == 0


def test_models_loaded_together_add_up(smol, gemma):
    options = LoadOptions(n_ctx=2048)
    parts = [estimate_for_model(m.summary, options) for m in (smol, gemma)]
    assert combined(parts).total_bytes == sum(p.total_bytes for p in parts)


@pytest.mark.models
def test_cli_refuses_with_numbers_and_force_proceeds(models_home, monkeypatch):
    monkeypatch.setattr(hardware_module, "detect_hardware", lambda: ONE_GB_BOX)
    runner = CliRunner()
    refused = runner.invoke(cli, ["run", GEMMA, "The sky is", "--ctx", "32768", "-n", "2", "--temp", "0"])
    assert refused.exit_code != 0
    (line,) = [line for line in refused.output.splitlines() if line.startswith("Error:")]
    assert "will not fit" in line and "needs" in line and "available after" in line and "--force" in line
    assert "low-memory-laptop" not in line  # the numbers, not the profile, explain it
    forced = runner.invoke(
        cli, ["run", GEMMA, "The sky is", "--ctx", "32768", "-n", "2", "--temp", "0", "--no-mmap", "--force"]
    )
    assert forced.exit_code == 0, forced.output
    assert "--force: loading" in forced.output
    fits = runner.invoke(cli, ["run", SMOL, "Hi", "-n", "2", "--temp", "0"])  # 2048 tokens: fits in 1 GB
    assert fits.exit_code == 0, fits.output


@pytest.mark.models
def test_models_info_shows_the_estimate(models_home):
    result = CliRunner().invoke(cli, ["models", "info", SMOL, "--json"])
    import json

    memory = json.loads(result.output)["memory_estimate"]
    assert memory["n_ctx"] >= 2048 and memory["total_bytes"] > memory["weights_bytes"] > 0
    assert "memory estimate" in CliRunner().invoke(cli, ["models", "info", SMOL]).output


def test_the_picker_refuses_a_model_that_will_not_fit(models_home, monkeypatch):
    from ondevice.cli.tui_launch import open_checked
    from ondevice.planning.preflight import InsufficientMemoryError

    options = LoadOptions(n_ctx=32768)
    assert open_checked(GEMMA, options).size_bytes > 0  # this machine has the room
    monkeypatch.setattr(hardware_module, "detect_hardware", lambda: ONE_GB_BOX)
    with pytest.raises(InsufficientMemoryError, match="will not fit next to the loaded models: needs"):
        open_checked(GEMMA, options)
