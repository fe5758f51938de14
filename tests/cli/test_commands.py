"""The CLI through click's CliRunner, with ONDEVICE_HOME in a temp dir."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from ondevice.errors import GGUFError
from tests.support.cli import invoke, one_error_line
from tests.support.gguf_samples import write_tiny_gguf
from tests.support.models import GEMMA, SMOL
from tests.support.readme import json_fields

# -- models ----------------------------------------------------------------------------------


def test_models_info_reports_a_base_gemma3_with_its_path(models_home):
    result = invoke("models", "info", GEMMA, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["kind"] == "base" and "declared by the bundled source" in info["kind_reason"]
    assert info["architecture"] == "gemma3"
    assert info["quant"] == "Q4_K_M"
    assert info["parameter_count"] == 268_098_176
    assert info["context_length"] == 32768
    assert info["has_chat_template"] is False
    assert info["file_size_bytes"] == 253_113_024 == Path(info["path"]).stat().st_size
    assert Path(info["path"]).is_relative_to(models_home)


def test_models_info_table_for_the_instruct_model(models_home):
    result = invoke("models", "info", SMOL)
    assert result.exit_code == 0, result.output
    assert "instruct" in result.stdout and "llama" in result.stdout and "True" in result.stdout


def test_names_from_a_file_print_as_written(isolated_home, tmp_path):
    odd = write_tiny_gguf(tmp_path / "odd[b].gguf", name="[/bold] \x1b[31mEvil [link=x]y[/link]")
    info = invoke("models", "info", str(odd))
    assert info.exit_code == 0, info.output  # "[/bold]" is not read as Rich markup
    assert "[/bold] \u241b[31mEvil [link=x]y[/link]" in info.stdout and "\x1b" not in info.stdout
    one_error_line(invoke("models", "pull", str(odd)), "invalid model name 'odd[b]'")
    assert invoke("models", "pull", str(odd), "--name", "odd").exit_code == 0
    listed = invoke("models", "list")
    assert listed.exit_code == 0, listed.output
    assert "odd:F16" in listed.stdout


def test_pull_list_and_rm_in_a_fresh_store(isolated_home, smol):
    pulled = invoke("models", "pull", SMOL, "--json")
    assert pulled.exit_code == 0, pulled.output
    path = Path(json.loads(pulled.stdout)["path"])
    assert path.is_file() and path.is_relative_to(isolated_home)
    assert json.loads(path.with_suffix(".json").read_text())["sha256"] == smol.manifest.sha256
    again = invoke("models", "pull", SMOL, "--json")
    assert json.loads(again.stdout)["path"] == str(path)

    listed = json.loads(invoke("models", "list", "--json").stdout)
    assert [m["ref"] for m in listed["models"]] == ["smollm2-135m-instruct:Q4_1"]
    by_ref = {b["ref"]: b for b in listed["bundled"]}
    assert by_ref[SMOL]["in_store"] and not by_ref[GEMMA]["in_store"] and by_ref[GEMMA]["installed"]

    removed = invoke("models", "rm", "smollm2-135m-instruct", "--json")
    assert json.loads(removed.stdout)["removed"] == [str(path)]
    assert not path.exists()
    assert json.loads(invoke("models", "list", "--json").stdout)["models"] == []


def test_pull_a_local_gguf_file(tmp_path):
    source = write_tiny_gguf(tmp_path / "tiny model.gguf", chat_template="{{ messages }}")
    result = invoke("models", "pull", str(source), "--name", "tiny", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(invoke("models", "info", "tiny", "--json").stdout)
    assert info["kind"] == "instruct" and info["source"] == str(source.resolve())
    one_error_line(invoke("models", "pull", "tiny"), "already in the store")
    one_error_line(invoke("models", "rm", "nothing-here"), "no model named")


# -- run, compare, chat ------------------------------------------------------------------------


def test_run_streams_an_answer_and_a_stats_line(models_home):
    result = invoke("run", SMOL, "Name a primary colour.", "--temperature", "0", "-n", "24")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip()
    stats = result.stderr.strip().splitlines()[-1]
    for part in ("prompt", "generated", "tok/s generation", "tok/s prompt", "first token", "peak memory"):
        assert part in stats


def test_run_json_is_one_object_with_the_text(models_home):
    result = invoke("run", GEMMA, "The capital of France is", "--temperature", "0", "-n", "12", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["model"]["kind"] == "base" and data["prompt_text"] == "The capital of France is"
    assert data["text"] and data["generated_tokens"] == 12 and data["stop_reason"] == "length"
    assert data["generation_tps"] > 0 and data["peak_rss_bytes"] > 0
    assert sorted(data) == sorted(json_fields("run"))  # the README lists exactly these
    assert data["time_to_first_token_seconds"] > 0  # the name bench's saved runs use


def test_compare_plain_shows_both_models_side_by_side(models_home):
    result = invoke(
        "compare",
        "--plain",
        GEMMA,
        SMOL,
        "--prompt",
        "Explain in one sentence why the sky is blue.",
        "--temperature",
        "0",
        "-n",
        "24",
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "gemma-3-270m:Q4_K_M" in out and "smollm2-135m-instruct:Q4_1" in out
    assert "[base]" in out and "[instruct]" in out
    assert out.count("tok/s") >= 4 and out.count("peak memory") == 2


def test_compare_json(models_home):
    result = invoke("compare", GEMMA, SMOL, "-p", "Hello", "--temp", "0", "-n", "8", "--json")
    rows = json.loads(result.stdout)
    assert [r["model"]["kind"] for r in rows] == ["base", "instruct"]
    assert rows[0]["prompt_text"] == "Hello" and rows[1]["prompt_text"].endswith("<|im_start|>assistant\n")


def test_chat_turns_and_commands(models_home):
    script = "Hello!\n/system Answer in one word.\nWhat colour is grass?\n/reset\n/bogus\n/exit\n"
    result = invoke("chat", SMOL, "--temp", "0", "-n", "24", input=script)
    assert result.exit_code == 0, result.output
    assert result.output.count("model> ") == 2
    assert "system prompt set; the conversation goes on" in result.output
    assert "conversation reset" in result.output and "unknown command /bogus" in result.output


def test_chat_system_keeps_the_conversation_help_and_multi_line(tmp_path, monkeypatch):
    from tests.support.fake_backend import FakeBackend

    backend = FakeBackend(answer="Green.")
    monkeypatch.setattr("ondevice.cli.chat.open_model", lambda model, options: backend)
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf", chat_template="{{ messages }}")
    script = 'Hello!\n/system Answer in one word.\n"""What colour\nis grass?"""\n/help\n/bogus\n/bye\n'
    result = invoke("chat", str(gguf), "--temperature", "0", input=script)
    assert result.exit_code == 0, result.output
    assert "system prompt set; the conversation goes on" in result.output
    assert "unknown command /bogus" in result.output and "/system TEXT" in result.output
    second = backend.requests[-1].messages
    assert [m.role for m in second] == ["system", "user", "assistant", "user"]  # Hello! is kept
    assert second[0].content == "Answer in one word." and second[-1].content == "What colour\nis grass?"
    assert len(backend.requests) == 2


def test_chat_with_a_base_model_uses_a_transcript(models_home):
    result = invoke("chat", GEMMA, "--temp", "0", "-n", "16", input="Hi\n")
    assert result.exit_code == 0, result.output
    assert "User:/Assistant: transcript" in result.output


# -- bad input: one clear line each -------------------------------------------------------------


@pytest.fixture
def smol_head(smol, tmp_path) -> bytes:
    with open(smol.path, "rb") as handle:
        return handle.read(1 << 20)


def test_missing_file(tmp_path):
    one_error_line(invoke("run", str(tmp_path / "nope.gguf"), "hi"), "nope.gguf", "no such file")


def test_empty_file(tmp_path):
    (tmp_path / "empty.gguf").write_bytes(b"")
    one_error_line(invoke("run", str(tmp_path / "empty.gguf"), "hi"), "empty file")


def test_text_file_named_gguf(tmp_path):
    (tmp_path / "notes.gguf").write_text("these are my notes, not a model\n" * 10)
    one_error_line(invoke("models", "info", str(tmp_path / "notes.gguf")), "not a GGUF file")


def test_gguf_cut_off_mid_tensor_data(smol, tmp_path):
    cut = tmp_path / "cut.gguf"
    with open(smol.path, "rb") as src, open(cut, "wb") as dst:
        dst.write(src.read(smol.summary.file_size // 2))
    one_error_line(invoke("run", str(cut), "hi"), "cut.gguf", "past the end of the file")


def test_header_claiming_2_pow_63_tensors(smol_head, tmp_path):
    bad = tmp_path / "many.gguf"
    bad.write_bytes(smol_head[:8] + struct.pack("<Q", 2**63) + smol_head[16:])
    one_error_line(invoke("run", str(bad), "hi"), "9223372036854775808 tensors")


def test_header_with_a_2_pow_62_byte_string(smol_head, tmp_path):
    bad = tmp_path / "string.gguf"
    # The first metadata key's length sits right after magic, version and the two counts.
    bad.write_bytes(smol_head[:24] + struct.pack("<Q", 2**62) + smol_head[32:])
    one_error_line(invoke("models", "info", str(bad)), "string.gguf")


def test_unknown_reference():
    line = one_error_line(invoke("run", "smolm2-135m-instruct", "hi"), "unknown model reference")
    assert "bundled:smollm2-135m-instruct" in line


def test_unknown_bundled_name():
    one_error_line(invoke("models", "info", "bundled:llama-70b"), "no bundled model named")


def test_prompt_longer_than_the_context(models_home):
    result = invoke("run", SMOL, "word " * 600, "--ctx", "256")
    one_error_line(result, "context holds 256")


def test_empty_prompt(models_home):
    assert invoke("run", SMOL, "   ").exit_code == 2


def test_debug_variable_shows_the_exception(tmp_path, monkeypatch):
    monkeypatch.setenv("ONDEVICE_DEBUG", "1")
    (tmp_path / "empty.gguf").write_bytes(b"")
    result = invoke("run", str(tmp_path / "empty.gguf"), "hi")
    assert isinstance(result.exception, GGUFError)


def test_worker_killed_during_generation_from_the_real_cli(models_home, tmp_path):
    """The real console script: SIGKILL the worker mid-answer; the CLI reports it and exits 1."""
    exe = shutil.which("ondevice", path=os.path.dirname(sys.executable))
    assert exe, "the ondevice console script is installed next to this Python"
    proc = subprocess.Popen(
        [
            exe,
            "run",
            SMOL,
            "Count to one thousand:",
            "--temp",
            "0",
            "-n",
            "3000",
            "--ignore-eos",
            "--ctx",
            "4096",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "ONDEVICE_HOME": str(models_home)},
    )
    try:
        assert proc.stdout is not None
        proc.stdout.read(20)  # generation has started
        workers = [c for c in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(c.cmdline())]
        assert len(workers) == 1
        workers[0].send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    text = err.decode()
    assert "Traceback" not in text
    errors = [line for line in text.splitlines() if line.startswith("Error:")]
    assert errors == [
        "Error: the model worker for smollm2-135m-instruct:Q4_1 was killed by SIGKILL while generating"
    ]


def test_pull_killed_midway_leaves_nothing_and_the_next_pull_completes(isolated_home):
    exe = shutil.which("ondevice", path=os.path.dirname(sys.executable))
    env = {**os.environ, "ONDEVICE_HOME": str(isolated_home)}
    model_dir = isolated_home / "models" / "gemma-3-270m"
    proc = subprocess.Popen([exe, "models", "pull", GEMMA], env=env, stderr=subprocess.DEVNULL)
    try:
        for _ in range(3000):
            partials = list(model_dir.glob(".*.partial")) if model_dir.is_dir() else []
            if partials and partials[0].stat().st_size > 0:
                break
            time.sleep(0.005)
        else:
            pytest.fail("the pull never started writing")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (model_dir / "Q4_K_M.gguf").exists() and not (model_dir / "Q4_K_M.json").exists()
    assert list(model_dir.glob(".*.partial"))  # the dead writer's leftovers, until the next run
    result = invoke("models", "pull", GEMMA, "--json")
    assert result.exit_code == 0, result.output
    assert Path(json.loads(result.stdout)["path"]).stat().st_size == 253_113_024
    assert not list(model_dir.glob(".*.partial"))


def test_run_with_a_system_prompt(models_home):
    args = ["run", SMOL, "What is the capital of France?", "--temp", "0", "-n", "32", "--json"]
    plain = json.loads(invoke(*args).stdout)
    assert "You are a helpful AI assistant named SmolLM" in plain["prompt_text"]  # the template's default
    steered = json.loads(invoke(*args, "--system", "Answer the question.").stdout)
    assert steered["prompt_text"].startswith("<|im_start|>system\nAnswer the question.<|im_end|>")
    assert "Paris" in steered["text"]
    base = json.loads(invoke("run", GEMMA, "Hello", "-n", "4", "--system", "ignored", "--json").stdout)
    assert base["prompt_text"] == "Hello"
