"""The CLI behaves as llama.cpp and Ollama users expect: -t is threads, prompts come from stdin or a
file, sizes need units, nothing the user asked for changes without a word (issue #13's reproductions)."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from ondevice.cli.options import LoadFlags, generation_options, load_options
from ondevice.runtime.protocol import GenerationParams
from ondevice.store import Store
from tests.support.cli import invoke, one_error_line
from tests.support.models import GEMMA, SMOL


def test_t_is_threads_and_temperature_has_only_long_names():
    seen: list[tuple[GenerationParams, LoadFlags]] = []

    @click.command()
    @generation_options
    @load_options()
    def probe(params: GenerationParams, load: LoadFlags) -> None:
        seen.append((params, load))

    assert CliRunner().invoke(probe, ["-t", "4", "--temp", "0.5"], catch_exceptions=False).exit_code == 0
    assert CliRunner().invoke(probe, ["--temperature", "0"], catch_exceptions=False).exit_code == 0
    (first, first_load), (second, _) = seen
    assert first_load.explicit["n_threads"] == 4 and first.temperature == 0.5 and second.temperature == 0


@pytest.mark.models
def test_prompts_come_from_an_argument_a_pipe_a_dash_or_a_file(models_home, tmp_path):
    args = ["--temp", "0", "-n", "4", "--json"]
    given = json.loads(invoke("run", SMOL, "What is 2+2?", *args).stdout)
    piped = invoke("run", SMOL, *args, input="What is 2+2?")
    dash = invoke("run", SMOL, "-", *args, input="What is 2+2?")
    prompt_file = tmp_path / "prompt.txt"
    prompt_file.write_text("What is 2+2?")
    from_file = invoke("run", SMOL, "--file", str(prompt_file), *args)
    for result in (piped, dash, from_file):
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert data["prompt_text"] == given["prompt_text"] and data["text"] == given["text"]
    one_error_line(invoke("run", SMOL, "Hi", "--file", str(prompt_file)), "give the prompt once")


def test_a_ram_size_without_a_unit_is_refused():
    one_error_line(invoke("profiles", "recommend", "llama3.2", "--ram", "4"), "no unit", "8G")


def test_compare_without_a_terminal_never_opens_the_ui():
    # CliRunner's stdin and stdout are not terminals, as in a pipe or CI.
    one_error_line(invoke("compare", SMOL), "needs a terminal", "--plain")


@pytest.mark.models
def test_compare_without_a_terminal_answers_a_prompt_plainly(models_home):
    result = invoke("compare", SMOL, "-p", "Hi", "--temp", "0", "-n", "4")
    assert result.exit_code == 0, result.output
    assert "not a terminal" in result.stderr and "\x1b[?1049h" not in result.stdout  # no alternate screen
    assert "Prompt: Hi" in result.stdout


@pytest.mark.models
def test_what_llama_cpp_changes_and_what_a_base_model_ignores_is_said(models_home):
    rounded = invoke("run", SMOL, "Hi", "--ctx", "32", "-n", "2", "--temp", "0", "--json")
    assert rounded.exit_code == 0, rounded.output
    assert json.loads(rounded.stdout)["n_ctx"] == 256
    assert "the context is 256 tokens, not the 32 asked for" in rounded.stderr
    base = invoke("run", GEMMA, "Hi", "--system", "Be brief.", "-n", "2", "--temp", "0")
    assert base.exit_code == 0 and "--system is not used" in base.stderr
    gpu = invoke("run", SMOL, "Hi", "--gpu-layers", "-1", "-n", "2", "--temp", "0")
    assert gpu.exit_code == 0 and "no GPU backend, so --gpu-layers -1 does nothing" in gpu.stderr


def test_looking_at_a_bundled_model_does_not_pull_it(isolated_home):
    shown = invoke("models", "info", GEMMA, "--json")
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert data["architecture"] == "gemma3" and data["kind"] == "base" and "not in the store" in data["store"]
    assert data["path"] is None  # assembled into a temporary file, gone now
    assert Store().entries() == []
    smol = json.loads(invoke("models", "info", SMOL, "--json").stdout)
    assert smol["path"].endswith(".gguf") and Store().entries() == []  # read where the package put it


def test_memory_figures_say_used_or_reserved(isolated_home):
    shown = invoke("models", "info", SMOL)
    assert shown.exit_code == 0, shown.output
    assert "compute used" in " ".join(shown.stdout.split()) and "reserved" in shown.stdout


@pytest.mark.models
def test_an_eval_of_instruction_following_alone_writes_null_where_nothing_applies(models_home):
    args = ["--metrics", "follow", "--follow-limit", "1", "--follow-tokens", "8", "--json", "--no-save"]
    result = invoke("eval", SMOL, *args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["text_source"], data["n_ctx"], data["n_chunks"]) == (None, None, None)
    assert data["follow"] and data["quality"] == []


@pytest.mark.models
def test_a_name_with_several_levels_runs_the_best_that_fits(isolated_home):
    from ondevice.converters.quantize import quantize

    quantize(SMOL, "q8_0", allow_requantize=True)  # the store now holds Q4_1 and Q8_0
    result = invoke("run", "smollm2-135m-instruct", "Hi", "-n", "2", "--temp", "0", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"]["quant"] == "Q8_0"  # more bits per weight, and it fits
    assert "using smollm2-135m-instruct:Q8_0 (also in the store: Q4_1" in result.stderr
    tight = invoke(
        "run", "smollm2-135m-instruct", "Hi", "-n", "2", "--temp", "0", "--json", "--profile", "tiny"
    )
    assert tight.exit_code != 0  # an unknown profile is an error, not a silent default
