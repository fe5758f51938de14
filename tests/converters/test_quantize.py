"""The quantization ladder on the bundled SmolLM2 (a Q4_1 file, so requantizing needs the flag)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ondevice.converters.dequantize import convert_gguf
from ondevice.converters.quantize import QuantizeError, is_quantized, parse_levels, quantize, quantize_file
from ondevice.gguf_file import read_gguf
from ondevice.kinds import Kind
from ondevice.manifest import sha256_file
from ondevice.progress import Progress, Unit
from ondevice.prompting import Message
from ondevice.runtime.engine import WorkerModel, chat_turn
from ondevice.runtime.protocol import GenerationParams, LoadOptions
from ondevice.store import Store
from tests.support.cli import invoke, one_error_line
from tests.support.gguf_samples import write_tiny_gguf
from tests.support.models import SMOL
from tests.support.processes import default_sigint

pytestmark = pytest.mark.models


def test_levels_parse_in_any_case_and_unknown_ones_list_the_known():
    assert [lv.name for lv in parse_levels("Q8_0, q4_k_m,q8_0")] == ["Q8_0", "Q4_K_M"]
    with pytest.raises(QuantizeError, match=r"unknown quantization level 'q9'.*q8_0.*q2_k"):
        parse_levels("q8_0,q9")


def test_requantizing_without_the_flag_is_one_clear_line(smol, tmp_path):
    # The models_home fixture is not used: nothing may be written, and the store must stay empty.
    result = invoke("quantize", SMOL, "--levels", "q8_0")
    line = one_error_line(result)
    assert "already quantized (Q4_1)" in line and "--allow-requantize" in line
    assert Store().entries() == [] or all(e.manifest.source.startswith("bundled:") for e in Store().entries())


def test_ladder_with_the_flag_writes_loadable_files_with_manifests(smol, isolated_home):
    result = invoke("quantize", SMOL, "--levels", "q8_0,q2_k", "--allow-requantize", "--json")
    assert result.exit_code == 0, result.output
    outputs = json.loads(result.stdout)["outputs"]
    assert [o["level"] for o in outputs] == ["Q8_0", "Q2_K"]
    store = Store()
    for output in outputs:
        path = Path(output["path"])
        assert path.is_relative_to(isolated_home) and path.is_file()
        assert output["requantized"] and "capped by the source" in output["notes"][0]
        summary = read_gguf(path)
        assert output["size_bytes"] == path.stat().st_size
        assert output["bits_per_weight"] == pytest.approx(summary.bits_per_weight, abs=1e-3)
        entry = store.find("smollm2-135m-instruct", output["level"])
        manifest = entry.manifest
        assert manifest.source == "quantize:smollm2-135m-instruct:Q4_1"
        assert manifest.sha256 == sha256_file(path)
        assert manifest.kind == Kind.INSTRUCT.value and manifest.has_chat_template
        assert manifest.extra["level"] == output["level"].lower() and manifest.extra["seconds"] > 0
        assert manifest.extra["source_quant"] == "Q4_1"
    # Q8_0 really is 8.5 bits per weight; "Q2_K" on a 576-wide model falls back for most tensors.
    assert outputs[0]["bits_per_weight"] == pytest.approx(8.5, abs=0.05)
    assert outputs[1]["fallback_tensors"] > 0 and outputs[1]["bits_per_weight"] > 3.35

    messages = [Message("system", "Answer the question."), Message("user", "What is the capital of France?")]
    for output in outputs:
        with WorkerModel(output["path"], LoadOptions(n_ctx=512)) as worker:
            finished = worker.generate(
                chat_turn(True, messages, GenerationParams(max_tokens=24, temperature=0))
            )
        assert finished.stats.generated_tokens > 0 and finished.text.strip()
        if output["level"] == "Q8_0":
            assert "Paris" in finished.text

    # Text mode prints exactly the paths written on stdout.
    again = invoke("quantize", SMOL, "--levels", "q4_0", "--allow-requantize")
    assert again.exit_code == 0, again.output
    assert again.stdout.strip().splitlines() == [str(store.find("smollm2-135m-instruct", "Q4_0").path)]


def test_a_dequantize_passes_on_the_assembly_and_the_quantizer_progress(isolated_home):
    events: list[Progress] = []
    result = convert_gguf(SMOL, "q8_0", progress=events.append)  # the bundled file is assembled first
    assembled = [e for e in events if e.task == "assemble bundled:smollm2-135m-instruct"]
    written = [e for e in events if e.task == "quantize smollm2-135m-instruct:Q4_1"]
    assert assembled and written and len(assembled) + len(written) == len(events)
    assert events[: len(assembled)] == assembled and assembled[-1].done == assembled[-1].total
    assert {(e.step, e.unit) for e in written} == {("Q8_0 (1/1)", Unit.BYTES)}
    done = [e.done for e in written]
    assert done == sorted(done) and 0 < done[-1] <= result.size_bytes
    assert all(e.total is not None and e.total >= e.done for e in written)


def test_the_source_file_cannot_be_overwritten_by_its_own_level(smol):
    with pytest.raises(QuantizeError, match="is the source"):
        quantize(SMOL, "q4_1", allow_requantize=True)


def test_a_quantizer_failure_is_an_error_and_leaves_no_file(tmp_path):
    # Structurally valid GGUF that llama.cpp refuses to load as a model: the child fails, we report.
    tiny = write_tiny_gguf(tmp_path / "tiny.gguf")
    assert not is_quantized(read_gguf(tiny))
    with pytest.raises(QuantizeError, match=r"quantizer failed on tiny\.gguf -> Q8_0"):
        quantize(str(tiny), "q8_0")
    assert Store().entries() == []
    assert not any((Store().models / "tiny").glob("*.gguf"))
    with pytest.raises(QuantizeError):
        quantize_file(tmp_path / "missing.gguf", tmp_path / "out.gguf", parse_levels("q8_0")[0])


def test_convert_dequantizes_a_bundled_gguf_to_seed_a_ladder(smol, isolated_home):
    result = invoke("convert", SMOL, "--outtype", "f16", "--json")
    assert result.exit_code == 0, result.output
    converted = json.loads(result.stdout)
    path = Path(converted["path"])
    assert path.is_relative_to(isolated_home) and converted["ref"] == "smollm2-135m-instruct:F16"
    assert "from Q4_1" in converted["notes"][0]
    summary = read_gguf(path)
    assert summary.file_type_name == "F16" and not is_quantized(summary)
    assert summary.bits_per_weight == pytest.approx(16.0, abs=0.05)
    entry = Store().find("smollm2-135m-instruct", "F16")
    assert entry.manifest.kind == Kind.INSTRUCT.value and entry.manifest.sha256 == sha256_file(path)
    assert entry.manifest.source == f"convert:{SMOL}"  # what was converted, not "quantize:...:Q4_1"
    # An F16 source needs no --allow-requantize, and its levels are not marked as requantized.
    ladder = invoke("quantize", "smollm2-135m-instruct:F16", "--levels", "q8_0", "--json")
    assert ladder.exit_code == 0, ladder.output
    (output,) = json.loads(ladder.stdout)["outputs"]
    assert not output["requantized"] and output["notes"] == []
    messages = [Message("system", "Answer the question."), Message("user", "What is the capital of France?")]
    for gguf_path in (path, Path(output["path"])):
        with WorkerModel(gguf_path, LoadOptions(n_ctx=512)) as worker:
            finished = worker.generate(
                chat_turn(True, messages, GenerationParams(max_tokens=24, temperature=0))
            )
        assert "Paris" in finished.text
    missing = invoke("convert", str(isolated_home / "missing.gguf"))
    assert one_error_line(missing) and "no such file" in missing.output


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "sigkill"])
def test_an_interrupted_quantize_leaves_nothing_and_the_next_run_completes(sig, smol, isolated_home):
    # A large enough source that the quantizer is still writing when the signal lands.
    source = invoke("convert", SMOL, "--outtype", "f32", "--name", "big", "--json")
    assert source.exit_code == 0, source.output
    model_dir = Store().model_dir("big")
    env = {**os.environ, "ONDEVICE_HOME": str(isolated_home)}
    # Its own process group, as a shell runs a command: Ctrl-C and kill reach the quantizer child too.
    proc = subprocess.Popen(
        [sys.executable, "-m", "ondevice", "quantize", "big:F32", "--levels", "q4_k_m", "--threads", "1"],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=default_sigint,
    )
    try:
        deadline = time.monotonic() + 60
        while not any(model_dir.glob(".*.partial")) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert any(model_dir.glob(".*.partial")), "the quantizer never started writing"
        os.killpg(proc.pid, sig)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0
    if sig == signal.SIGINT:
        assert b"Traceback" not in proc.stderr.read()
    assert not (model_dir / "Q4_K_M.gguf").exists() and not (model_dir / "Q4_K_M.json").exists()
    again = invoke("quantize", "big:F32", "--levels", "q4_k_m", "--json")
    assert again.exit_code == 0, again.output
    assert read_gguf(model_dir / "Q4_K_M.gguf").file_type_name == "Q4_K_M"
    assert not any(model_dir.glob(".*.partial"))


def test_outputs_of_a_file_named_after_its_level_are_named_after_the_model(smol, tmp_path):
    # A store file (NAME/F16.gguf) or a download (NAME.Q8_0.gguf) given by path: the outputs are NAME:LEVEL.
    for relative in ("smollm2/F16.gguf", "SmolLM2-135M.Q4_1.gguf"):
        copy = tmp_path / relative
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(smol.path, copy)
        (result,) = quantize(str(copy), "q8_0", allow_requantize=True)
        assert result.ref == f"{relative.split('/')[0].removesuffix('.Q4_1.gguf')}:Q8_0"
