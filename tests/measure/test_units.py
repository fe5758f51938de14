"""Measurement logic without models: statistics, KL divergence kernels, checkers, results, runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ondevice.kinds import Kind
from ondevice.measure import MeasureError
from ondevice.measure.follow import FollowPrompt, Instruction, builtin_prompts, load_prompts, summarize
from ondevice.measure.follow.checkers import CHECKERS, check, loose_variants, sentences, words
from ondevice.measure.machine import backend_name
from ondevice.measure.quality import chunk_tokens
from ondevice.measure.report import markdown_table
from ondevice.measure.results import BenchResult, BenchRun, Memory, ModelRecord, Rate
from ondevice.measure.runs import list_runs, load_run, save_run
from ondevice.measure.stats import (
    Estimate,
    mean,
    mean_with_error,
    median,
    percentile,
    ppl,
    ppl_ratio,
    proportion,
    rms,
    stddev,
)
from ondevice.prompting import PromptMode
from ondevice.runtime.logprobs import dequantize, kl_divergence, log_softmax, quantize, score_rows

# -- statistics ---------------------------------------------------------------------------------


def test_mean_stddev_median_percentiles_by_hand():
    values = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]
    assert mean(values) == 5.0
    # sum of squared deviations 32, over n - 1 = 7
    assert stddev(values) == pytest.approx(math.sqrt(32 / 7))
    assert stddev([3.0]) == 0.0
    assert median(values) == 4.5
    assert median([3.0, 1.0, 2.0]) == 2.0
    # 0.99 * 7 = 6.93: between 7 and 9, 93 % of the way
    assert percentile(values, 0.99) == pytest.approx(7 + 0.93 * 2)
    assert percentile(values, 0.0) == 2.0 and percentile(values, 1.0) == 9.0
    assert percentile(values, 0.25) == pytest.approx(float(np.percentile(values, 25)))
    with pytest.raises(ValueError):
        mean([])


def test_uncertainties_by_hand():
    values = [1.0, 2.0, 3.0, 4.0]
    # population variance 1.25; standard error sqrt(1.25 / 3)
    est = mean_with_error(values)
    assert est.value == 2.5 and est.uncertainty == pytest.approx(math.sqrt(1.25 / 3))
    # same as the sample standard deviation over sqrt(n)
    assert est.uncertainty == pytest.approx(stddev(values) / 2)
    p = proportion(3, 4)
    assert p.value == 0.75 and p.uncertainty == pytest.approx(math.sqrt(0.75 * 0.25 / 3))
    nll = [1.0, 2.0, 3.0, 4.0]
    assert ppl(nll).value == pytest.approx(math.exp(2.5))
    assert ppl(nll).uncertainty == pytest.approx(math.exp(2.5) * math.sqrt(1.25 / 3))
    log_ratio, ratio = ppl_ratio(nll, nll)
    assert log_ratio.value == 0 and ratio.value == 1 and ratio.uncertainty == pytest.approx(0, abs=1e-12)
    shifted_log, shifted = ppl_ratio([x + 0.1 for x in nll], nll)
    assert shifted_log.value == pytest.approx(0.1) and shifted.value == pytest.approx(math.exp(0.1))
    assert shifted.uncertainty == pytest.approx(0, abs=1e-7)  # perfectly correlated
    r = rms([3.0, -4.0])
    assert r.value == pytest.approx(math.sqrt(12.5))
    assert Estimate(0.5, 0.01).format(1, 100, " %") == "50.0 ± 1.0 %"


# -- log-probabilities ----------------------------------------------------------------------------


def test_kl_divergence_on_known_distributions():
    p = np.log(np.array([[0.5, 0.5], [0.25, 0.75]]))
    q = np.log(np.array([[0.9, 0.1], [0.25, 0.75]]))
    kld = kl_divergence(p, q)
    assert kld[0] == pytest.approx(0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1))
    assert kld[1] == pytest.approx(0.0, abs=1e-12)
    assert (kl_divergence(q, p) != kld).any()  # not symmetric


def test_quantized_reference_keeps_log_probabilities_to_1e4():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, size=(6, 1000)).astype(np.float32)
    steps, params = quantize(logits)
    assert steps.dtype == np.uint16 and params.shape == (6, 2)
    wide = logits.astype(np.float64)
    exact = wide - wide.max(axis=1, keepdims=True)
    exact -= np.log(np.exp(exact).sum(axis=1, keepdims=True))
    assert np.abs(log_softmax(logits) - exact).max() < 1e-5
    back = dequantize(steps, params)
    kept = exact > exact.max(axis=1, keepdims=True) - 16
    assert np.abs(back - exact)[kept].max() < 1.3e-4


def test_scores_against_a_reference_same_and_different():
    logits = np.array([[2.0, 1.0, 0.0, -1.0], [0.0, 3.0, 1.0, 0.0]], dtype=np.float32)
    targets = np.array([0, 2])
    ref = score_rows(logits, targets)
    assert ref.nll[0] == pytest.approx(-log_softmax(logits)[0, 0])
    assert ref.top.tolist() == [0, 1]
    same = score_rows(logits, targets, quantize(logits), ref.nll, ref.top)
    assert np.abs(same.kld).max() < 1e-4 and same.same_top.all() and np.abs(same.p_diff).max() == 0
    other = logits.copy()
    other[0] = [1.0, 2.0, 0.0, -1.0]  # the top token moves
    moved = score_rows(other, targets, quantize(logits), ref.nll, ref.top)
    assert moved.kld[0] > 0.1 and moved.same_top.tolist() == [False, True]
    assert moved.p_diff[0] < 0  # the right token lost probability


def test_chunks_put_bos_first_and_refuse_short_texts():
    chunks = chunk_tokens(list(range(10, 30)), 8, None, bos=1)
    assert len(chunks) == 2 and chunks[0][0] == 1 and chunks[1] == [1, *range(19, 26)]
    assert len(chunk_tokens(list(range(100)), 8, 3, None)) == 3
    with pytest.raises(MeasureError, match="shorter than one chunk"):
        chunk_tokens(list(range(7)), 8, None, None)


def test_backend_name_from_system_info():
    assert backend_name("CPU : SSE3 = 1 | AVX = 1 | ") == "CPU"
    assert backend_name("CUDA : ARCHS = 890 | USE_GRAPHS = 1 | CPU : AVX = 1 | ") == "CUDA"


# -- checkers -------------------------------------------------------------------------------------

PASS_FAIL = {
    "length:max_words": ({"n": 5}, "Lava comes from inside.", "This answer has far too many words in it."),
    "length:min_words": ({"n": 4}, "one two three four", "one two three"),
    "length:max_sentences": ({"n": 2}, "It rains. It pours!", "One. Two. Three."),
    "keywords:include": ({"keywords": ["compost", "sun"]}, "Compost and sun help.", "Compost helps."),
    "keywords:exclude": ({"keywords": ["blue"]}, "The sea is grey-green.", "The sea is Blue."),
    "keywords:frequency": ({"word": "moon", "n": 2}, "Moon, moon.", "The moon. Moonlight."),
    "case:lowercase": ({}, "all lower here.", "Not all lower."),
    "case:uppercase": ({}, "ALL CAPS HERE!", "ALL CAPS hERE"),
    "format:json": ({}, '```json\n{"a": [1, 2]}\n```', "{'a': 1}"),
    "format:bullets": ({"n": 2}, "* one\n- two", "* one\n* two\n* three"),
    "format:numbered": ({"n": 2}, "1. mix\n2. bake", "1. mix\n2. bake\n3. eat"),
    "format:title": ({}, "<<Autumn>>\nLeaves fall.", "Autumn\nLeaves fall."),
    "format:quotation": ({}, '"You can do it."', "You can do it."),
    "format:placeholders": ({"n": 2}, "Dear [name], on [date]", "Dear [name],"),
    "format:highlights": ({"n": 2}, "Buy *in bulk* and *plan*.", "Buy **"),
    "format:paragraphs": ({"n": 2}, "<<T>>\n\nFirst.\n\nSecond.", "First.\nStill first."),
    "start:phrase": ({"phrase": "Hi Sam"}, "  hi sam, the meeting moved.", "Hello Sam."),
    "end:phrase": ({"phrase": "See you there."}, "Come! See you there.\n", "See you there. Bye."),
    "punctuation:no_commas": ({}, "Rain falls and falls.", "Rain, rain."),
    "content:postscript": ({"marker": "P.S."}, "Hello.\n\nP.S. Bring sun cream.", "Hello. PS later"),
}


def test_every_checker_is_tested():
    assert set(PASS_FAIL) == set(CHECKERS)


@pytest.mark.parametrize("kind", sorted(PASS_FAIL))
def test_checker_passes_and_fails(kind):
    args, good, bad = PASS_FAIL[kind]
    assert check(kind, good, args)[0], good
    assert not check(kind, bad, args)[0], bad


def test_loose_accepts_a_preamble_and_bold_markers_strict_does_not():
    answer = "Sure! Here is my answer:\nall lowercase text here."
    assert check("case:lowercase", answer, {}) == (False, True)
    assert check("start:phrase", "**Hi Sam**, hello", {"phrase": "Hi Sam"}) == (False, True)
    assert len(loose_variants("a\nb\nc")) == 8
    assert check("case:lowercase", "Nope, Not Lower.", {}) == (False, False)


def test_word_and_sentence_counting():
    assert words("It's a test - isn't it? 42 times.") == ["It's", "a", "test", "isn't", "it", "42", "times"]
    assert sentences("One. Two! Three? Four") == 4
    assert sentences("Version 3.5 is out.") == 1


# -- prompts --------------------------------------------------------------------------------------


def test_builtin_prompt_set():
    prompts = builtin_prompts()
    assert len(prompts) >= 40 and len({p.id for p in prompts}) == len(prompts)
    kinds = [i.kind for p in prompts for i in p.instructions]
    assert set(kinds) == set(CHECKERS)
    for p in prompts:
        for i in p.instructions:
            check(i.kind, "some answer", i.args)  # the arguments fit the checker
    assert len({i.kind for p in prompts[:10] for i in p.instructions}) >= 8  # a prefix mixes types


def test_prompt_files_and_bad_ones(tmp_path):
    good = tmp_path / "p.jsonl"
    good.write_text(
        json.dumps({"id": "x", "prompt": "Say hi.", "instructions": [{"type": "case:lowercase"}]})
    )
    (prompt,) = load_prompts(good)
    assert prompt.instructions == (Instruction("case:lowercase", {}),)
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    with pytest.raises(MeasureError, match="empty"):
        load_prompts(empty)
    unknown = tmp_path / "u.json"
    unknown.write_text(json.dumps([{"prompt": "x", "instructions": [{"type": "rhyme"}]}]))
    with pytest.raises(MeasureError, match="unknown instruction 'rhyme'"):
        load_prompts(unknown)


def _record(name: str = "m:Q8_0") -> ModelRecord:
    return ModelRecord(name, name, f"/x/{name}.gguf", Kind.INSTRUCT, "Q8_0", "llama", 1000, 134_000_000, 8.5)


def test_follow_scores_prompt_and_instruction_level():
    prompts = [
        FollowPrompt("a", "..", (Instruction("case:lowercase"), Instruction("length:max_words", {"n": 3}))),
        FollowPrompt("b", "..", (Instruction("punctuation:no_commas"),)),
    ]
    result = summarize(_record(), PromptMode.CHAT_TEMPLATE, prompts, ["ok fine", "Yes, no"])
    assert result.prompt_strict == 0.5 and result.instruction_strict == pytest.approx(2 / 3)
    assert result.by_type["punctuation:no_commas"].strict == 0
    assert result.outcomes[1].failed == ("punctuation:no_commas",)


# -- results and runs ------------------------------------------------------------------------------


def _bench_run() -> BenchRun:
    rate = Rate(100.0, 2.0, 100.0, (98.0, 100.0, 102.0))
    result = BenchResult(
        _record(),
        "CPU",
        4,
        512,
        0,
        4096,
        512,
        128,
        3,
        rate,
        rate,
        Estimate(0.2, 0.01),
        0.5,
        Memory(300_000_000, 100, 10, 20),
    )
    return BenchRun(
        created="2026-01-01T00:00:00Z",
        machine={"cpu_model": "x"},
        llama_cpp_version="0.3.36",
        results=[result],
    )


def test_bench_run_renders_markdown_csv_json_and_saves(tmp_path):
    run = _bench_run()
    md = run.to_markdown()
    assert "| test " in md and "pp512" in md and "tg128" in md and "100.00 ± 2.00" in md
    assert "peak RSS" in md and "300.0 MB" in md
    csv_text = run.to_csv().splitlines()
    assert csv_text[0].startswith("model,") and len(csv_text) == 3
    path = save_run(run, tmp_path)
    assert run.id.startswith("bench-") and json.loads(path.read_text())["results"][0]["tg"]["mean"] == 100.0
    (tmp_path / "junk.json").write_text("not json")
    saved = list_runs(tmp_path)
    assert [s.id for s in saved] == [run.id] and saved[0].models == ("m:Q8_0",)
    assert load_run(path).kind == "bench"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_markdown_table_aligns():
    table = markdown_table(["a", "bb"], [["x", "1"], ["yyy", "22"]], right=[1])
    assert table.splitlines() == ["| a   | bb |", "| --- | -: |", "| x   |  1 |", "| yyy | 22 |"]
