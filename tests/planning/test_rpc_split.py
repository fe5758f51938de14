"""The pre-flight across this machine and RPC servers, with memory figures given (not measured):
refused here alone, accepted with servers that have room, refused when they do not; and the layers
land where llama.cpp's rule puts them."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ondevice.planning.hardware import Hardware
from ondevice.planning.plan import plan_load
from ondevice.planning.preflight import InsufficientMemoryError
from ondevice.planning.rpc_split import assign_layers, check_split, require_split_fit
from ondevice.runtime.protocol import LoadOptions
from ondevice.runtime.rpc_client import RpcError, ServerInfo, parse_endpoint

MiB = 1 << 20
SMALL_BOX = Hardware(
    os="Linux",
    os_version="Debian 12",
    machine="x86_64",
    cpu_model="tiny",
    physical_cores=2,
    logical_cores=2,
    total_ram_bytes=1 << 30,
    available_ram_bytes=1 << 30,
)


def server(port: int, free: int) -> ServerInfo:
    return ServerInfo(parse_endpoint(f"127.0.0.1:{port}"), (7, 0, 0), (free,), (free,))


def test_layers_follow_llama_cpps_split_rule():
    # 4 layers + output, all offloaded, equal shares: llama.cpp's upper_bound over 0/5 .. 4/5.
    assert assign_layers(4, -1, [1.0, 1.0]) == [0, 0, 0, 1, 1]
    assert assign_layers(4, -1, [3.0, 1.0]) == [0, 0, 0, 0, 1]
    # two layers offloaded: the last layer and the output layer; the rest stay on the CPU
    assert assign_layers(4, 2, [1.0, 1.0]) == [None, None, None, 0, 1]
    assert assign_layers(4, 0, [1.0]) == [None] * 5
    assert assign_layers(4, -1, [0.0, 1.0]) == [1] * 5


@pytest.mark.models
def test_a_model_too_big_here_fits_across_servers_and_is_refused_when_they_lack_room(models_home, gemma):
    plan = plan_load(hw=SMALL_BOX)
    tight = replace(SMALL_BOX, available_ram_bytes=plan.profile.headroom_bytes + 300 * MiB)
    local = plan_load(hw=tight).check(gemma.summary)
    assert not local.fits  # 314 MB free here: Gemma 3 270M (about 370 MB in all) does not fit alone

    options = replace(plan.options, rpc_servers=("127.0.0.1:1", "127.0.0.1:2"), n_gpu_layers=-1)
    roomy = [server(1, 2000 * MiB), server(2, 2000 * MiB)]
    split = check_split(gemma.summary, options, tight, plan.profile.headroom_bytes, roomy)
    assert split.fits, split.summary()
    here, first, second = split.devices
    assert here.layers == 0 and first.layers + second.layers == 18 and second.output
    assert 0 < here.needed_bytes <= here.available_bytes < local.ram_needed
    # the output layer is a second copy of Gemma's tied 170 MB embedding table, on the last server
    assert 20 * MiB < first.needed_bytes < second.needed_bytes
    require_split_fit(split, "gemma")  # does not raise

    cramped = [server(1, 60 * MiB), server(2, 60 * MiB)]
    refused = check_split(gemma.summary, options, tight, plan.profile.headroom_bytes, cramped)
    assert not refused.fits and [d.fits for d in refused.devices] == [True, True, False]
    with pytest.raises(InsufficientMemoryError) as error:
        require_split_fit(refused, "gemma")
    message = str(error.value)
    assert "will not fit across this machine and 2 RPC device(s)" in message
    assert "RPC1 (127.0.0.1:2): 8 layers + output" in message and "62.9 MB available" in message
    assert "RPC0" not in message  # the devices that fit are not in the way

    # by free memory a small server gets a small share; a manual even split overfills it
    uneven = [server(1, 40 * MiB), server(2, 2000 * MiB)]
    assert check_split(gemma.summary, options, tight, plan.profile.headroom_bytes, uneven).fits
    even = replace(options, tensor_split=(1.0, 1.0))
    overfilled = check_split(gemma.summary, even, tight, plan.profile.headroom_bytes, uneven)
    assert [d.fits for d in overfilled.devices] == [True, False, True]


@pytest.mark.models
def test_mixed_split_keeps_the_first_layers_here(models_home, smol):
    options = LoadOptions(n_ctx=1024, n_gpu_layers=10, rpc_servers=("127.0.0.1:1",))
    split = check_split(smol.summary, options, SMALL_BOX, 0, [server(1, 4000 * MiB)])
    here, remote = split.devices
    assert (here.layers, remote.layers, remote.output) == (21, 9, True)  # SmolLM2 has 30 layers


@pytest.mark.models
def test_models_held_at_once_cannot_share_servers(models_home, gemma, smol):
    # a server serves one client at a time: a second worker would wait for the first forever
    plan = plan_load({"rpc_servers": ("127.0.0.1:1",)}, hw=SMALL_BOX)
    with pytest.raises(RpcError, match="one client at a time, so --rpc takes one model at a time"):
        plan.options_for(gemma, smol)


def test_a_profile_names_servers_and_flags_beat_it(tmp_path):
    profile = tmp_path / "cluster.toml"
    profile.write_text('rpc = ["127.0.0.1:5", "box.local:50052"]  # two helpers\n')
    options = plan_load(profile_name=str(profile), hw=SMALL_BOX).options
    assert options.rpc_servers == ("127.0.0.1:5", "box.local:50052") and options.n_gpu_layers == -1
    flagged = plan_load({"n_gpu_layers": 4, "rpc_servers": ("127.0.0.1:6",)}, str(profile), hw=SMALL_BOX)
    assert flagged.options.rpc_servers == ("127.0.0.1:6",) and flagged.options.n_gpu_layers == 4
    assert plan_load(hw=SMALL_BOX).options.n_gpu_layers == 0  # no servers: the profile's 0 stays
    profile.write_text('rpc = ["box.local"]  # no port\n')
    with pytest.raises(RpcError, match="HOST:PORT"):
        plan_load(profile_name=str(profile), hw=SMALL_BOX)
