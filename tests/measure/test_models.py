"""bench and eval on the real bundled models, and requantized variants of SmolLM2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ondevice.cli import cli
from ondevice.converters.dequantize import convert_gguf
from ondevice.converters.quantize import quantize
from ondevice.measure.bench import BenchSettings, run_bench
from ondevice.measure.quality import QualitySettings, evaluate_quality, load_text
from ondevice.measure.runs import list_runs
from ondevice.runtime.protocol import LoadOptions, ScoreRequest
from ondevice.store import Store
from tests.support.models import GEMMA, SMOL

pytestmark = pytest.mark.models

SMALL_EVAL = ["--ctx", "64", "--chunks", "2", "--no-save", "--threads", "1"]


@pytest.fixture(scope="session")
def requantized(smol, tmp_path_factory) -> dict[str, Path]:
    """SmolLM2's Q4_1 file dequantized to F16 (`ondevice convert FILE.gguf`), and a Q4_K_M and Q2_K ladder
    made from that F16 by llama.cpp's quantizer: a source and two quantized variants of it."""
    store = Store(tmp_path_factory.mktemp("ladder-home"))
    f16 = convert_gguf(str(smol.path), "f16", name="smol", store=store)
    ladder = quantize(str(f16.path), "q4_k_m,q2_k", name="smol", store=store)
    return {"F16": f16.path, **{result.level: result.path for result in ladder}}


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_worker_bench_and_score_requests(smol_worker):
    pp = smol_worker.bench("pp", 32, seed=1)
    tg = smol_worker.bench("tg", 4, n_threads=1)
    assert pp.seconds > 0 and pp.first_token_seconds >= pp.seconds and tg.n_threads == 1
    assert pp.peak_rss_bytes > 50_000_000
    tokens = tuple(
        smol_worker.tokenize("The quick brown fox jumps over the lazy dog. " * 4, add_special=True)
    )
    scores = smol_worker.score(ScoreRequest(tokens=tokens, first=len(tokens) // 2))
    assert len(scores.nll) == len(tokens) - 1 - len(tokens) // 2 and (scores.nll > 0).all()
    # The repeated sentence is easy to predict the second time round.
    assert scores.nll.mean() < 2.0


def test_bench_library_measures_speed_and_memory(smol):
    settings = BenchSettings(16, 4, 2, (1,), LoadOptions(n_ctx=64, n_threads=1, use_mmap=False))
    steps = []
    (result,) = run_bench([smol], settings, steps.append).results
    assert result.pp and result.tg and result.pp.mean > 0 and len(result.tg.samples) == 2
    assert result.n_threads == 1 and result.backend
    # Without mmap the weights are resident: the worker's peak covers the file.
    assert result.memory.peak_rss_bytes > smol.summary.file_size
    assert result.memory.model_buffer_bytes > 0.9 * smol.summary.file_size
    assert result.memory.kv_cache_bytes > 0 and result.memory.compute_buffer_bytes > 0
    ttft = result.time_to_first_token_seconds
    assert result.load_seconds > 0 and ttft and ttft.value > 0
    assert steps[-1].done == steps[-1].total and any("pp16" in s.step for s in steps)


def test_bench_cli_on_both_bundled_models(models_home):
    args = ["-p", "16", "-n", "4", "-r", "1", "--ctx", "64", "--threads", "1"]
    result = invoke("bench", GEMMA, SMOL, *args)
    assert result.exit_code == 0, result.output
    assert "| model " in result.output and "pp16" in result.output and "tg4" in result.output
    assert "gemma3" in result.output and "llama" in result.output
    assert "peak RSS" in result.output and "load" in result.output
    saved = list_runs()
    assert [r.kind for r in saved] == ["bench"] and len(saved[0].models) == 2
    data = json.loads(invoke("bench", SMOL, *args, "--json", "--no-save").stdout)
    assert [r["model"]["name"] for r in data["results"]] == ["smollm2-135m-instruct:Q4_1"]
    assert data["machine"]["logical_cores"] >= 1 and data["results"][0]["tg"]["mean"] > 0
    assert len(list_runs()) == 1  # --no-save kept it out of the history


def test_a_model_against_itself(smol):
    text, source = load_text()
    settings = QualitySettings(n_ctx=64, n_chunks=2, options=LoadOptions(n_threads=1))
    run = evaluate_quality([smol], smol, text[:20000], source, settings)
    (q,) = run.quality
    assert q.n_scored == 2 * 31 and run.n_chunks == 2
    assert abs(q.kld.value) < 1e-5 and q.kld_max < 2e-4  # the stored reference's rounding only
    assert q.same_top.value == 1.0
    assert q.ppl_ratio.value == pytest.approx(1.0, abs=1e-9)
    assert q.ppl.value == pytest.approx(run.reference_ppl.value)
    assert q.delta_p.value == pytest.approx(0.0, abs=1e-9)


def test_a_smaller_quantization_drifts_from_its_source(requantized, models_home):
    result = invoke(
        "eval",
        str(requantized["Q2_K"]),
        str(requantized["F16"]),
        "--reference",
        str(requantized["F16"]),
        *SMALL_EVAL,
        "--json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    low, same = data["quality"]
    assert low["kld"]["value"] > 0.01 and low["same_top"]["value"] < 1.0
    assert low["ppl_ratio"]["value"] > 1.0 and low["delta_p_rms"]["value"] > 0
    assert abs(same["kld"]["value"]) < 1e-5 and same["same_top"]["value"] == 1.0
    text = invoke(
        "eval", str(requantized["Q2_K"]), "--reference", str(requantized["F16"]), *SMALL_EVAL
    ).stdout
    for column in ("KLD", "same top", "Δp", "PPL ratio", "Comparison"):
        assert column in text


def test_follow_on_the_base_and_instruct_models(models_home):
    result = invoke(
        "eval",
        SMOL,
        GEMMA,
        "--metrics",
        "follow",
        "--follow-limit",
        "2",
        "--follow-tokens",
        "12",
        "--json",
        "--no-save",
        "--threads",
        "1",
    )
    assert result.exit_code == 0, result.output
    smol, gemma = json.loads(result.stdout)["follow"]
    assert smol["prompt_mode"] == "chat_template" and gemma["prompt_mode"] == "completion"
    for f in (smol, gemma):
        assert len(f["outcomes"]) == 2 and 0 <= f["prompt_strict"] <= f["prompt_loose"] <= 1
        assert set(f["by_type"]) == {"case:lowercase", "format:bullets"}


def test_bad_inputs_give_one_clear_line(models_home, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("Too short to fill a chunk.")
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    cases = [
        (["eval", SMOL, "--reference", SMOL, "--text", str(short)], "shorter than one chunk of 512"),
        (["eval", SMOL, "--reference", GEMMA, *SMALL_EVAL], "vocabulary of 49152 tokens"),
        (["eval", SMOL, "--metrics", "follow", "--prompts", str(empty)], "prompt set is empty"),
        (["eval", SMOL, "--metrics", "kld"], "pass --reference"),
        (["eval", SMOL, "--metrics", "speed"], "unknown metrics speed"),
        (["bench", SMOL, "-p", "1024", "--ctx", "512"], "need a context of 1024"),
        (["bench", SMOL, "--threads", "two"], "comma-separated"),
    ]
    for args, message in cases:
        result = invoke(*args)
        assert result.exit_code != 0, args
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert message in result.output, result.output
        assert "Traceback" not in result.output and len(lines) <= 3, result.output


def test_perplexity_of_models_with_different_tokenizers(models_home):
    """Without a reference each model reads the text through its own tokenizer."""
    result = invoke("eval", GEMMA, SMOL, "--metrics", "ppl", *SMALL_EVAL, "--json")
    assert result.exit_code == 0, result.output
    gemma, smol = json.loads(result.stdout)["quality"]
    for scored in (gemma, smol):
        assert scored["n_scored"] == 2 * (64 - 1 - 32)
        assert 1.0 < scored["ppl"]["value"] < 1000
    assert gemma["ppl"]["value"] != smol["ppl"]["value"]


@pytest.mark.models
def test_a_model_with_another_vocabulary_is_left_out_not_the_whole_eval(models_home):
    args = ["--reference", SMOL, "--ctx", "128", "--chunks", "1", "--json", "--no-save"]
    result = invoke("eval", GEMMA, SMOL, *args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [q["model"]["name"] for q in data["quality"]] == ["smollm2-135m-instruct:Q4_1"]
    (skipped,) = data["skipped"]
    assert skipped["model"]["name"] == "gemma-3-270m:Q4_K_M" and "vocabulary" in skipped["reason"]
    assert "left out of the eval" in result.stderr
    alone = invoke("eval", GEMMA, *args)  # nothing left to measure: one error line
    assert alone.exit_code != 0 and "same tokenizer" in alone.output
