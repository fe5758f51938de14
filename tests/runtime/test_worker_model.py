"""The worker runtime on the real bundled models."""

from __future__ import annotations

import math
import os
import signal

import pytest

from ondevice.errors import PromptError, WorkerError
from ondevice.kinds import Kind
from ondevice.prompting import Message, PromptMode
from ondevice.runtime.engine import WorkerModel, chat_turn, single_turn
from ondevice.runtime.protocol import (
    Finished,
    GenerateRequest,
    GenerationParams,
    LoadOptions,
    PromptReady,
    TokenEvent,
)

GREEDY = GenerationParams(max_tokens=24, temperature=0)


def test_facts_describe_the_loaded_models(smol_worker, gemma_worker):
    assert smol_worker.facts.n_ctx == 1024
    assert smol_worker.facts.n_vocab == 49152
    assert smol_worker.facts.chat_template and "<|im_start|>" in smol_worker.facts.chat_template
    assert gemma_worker.facts.chat_template is None
    assert gemma_worker.facts.add_bos and gemma_worker.facts.bos_text == "<bos>"
    assert smol_worker.pid != os.getpid() and smol_worker.rss_bytes() > 50_000_000


def test_instruct_model_answers_inside_its_chat_template(smol_worker, smol):
    params = GenerationParams(max_tokens=32, temperature=0)
    request = single_turn(smol.kind, True, "What is the capital of France?", params)
    assert request.mode is PromptMode.CHAT_TEMPLATE
    finished = smol_worker.generate(request)
    prompt = finished.prompt.text
    # SmolLM2's template adds its own system prompt when none is given, then opens the assistant turn.
    assert prompt.startswith("<|im_start|>system\n")
    assert prompt.endswith(
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert finished.stats.stop_reason == "eos" or finished.stats.generated_tokens == 32
    assert finished.text.strip()


def test_instruct_model_says_paris_with_a_system_prompt(smol_worker):
    messages = [Message("system", "Answer the question."), Message("user", "What is the capital of France?")]
    finished = smol_worker.generate(chat_turn(True, messages, GenerationParams(max_tokens=32, temperature=0)))
    assert "Paris" in finished.text
    assert finished.stats.stop_reason == "eos"


def test_base_model_continues_raw_text(gemma_worker, gemma):
    assert gemma.kind is Kind.BASE
    request = single_turn(gemma.kind, False, "The capital of France is", GREEDY)
    assert request.mode is PromptMode.COMPLETION
    finished = gemma_worker.generate(request)
    assert finished.prompt.text == "The capital of France is"
    # BOS plus the text's own tokens: no template was applied.
    assert finished.prompt.n_tokens == len(gemma_worker.tokenize("The capital of France is")) + 1
    # A continuation of the sentence, not a reply: it goes on from "is" and mentions the subject.
    assert finished.text.startswith(" ") and "France" in finished.text


@pytest.mark.parametrize("worker_name", ["smol_worker", "gemma_worker"])
def test_same_seed_same_text_and_consistent_stats(worker_name, request):
    worker: WorkerModel = request.getfixturevalue(worker_name)
    params = GenerationParams(max_tokens=40, temperature=0.9, seed=1234)
    ask = single_turn(Kind.BASE, False, "Once upon a time", params)
    first, second = worker.generate(ask), worker.generate(ask)
    assert first.text == second.text and first.token_ids == second.token_ids
    other = worker.generate(
        single_turn(
            Kind.BASE, False, "Once upon a time", GenerationParams(max_tokens=40, temperature=0.9, seed=99)
        )
    )
    assert other.token_ids != first.token_ids

    stats = first.stats
    assert stats.generated_tokens == len(first.token_ids)
    assert worker.detokenize(first.token_ids) == first.text
    prompt_ids = worker.tokenize(first.prompt.text, add_special=True)
    assert stats.prompt_tokens == len(prompt_ids) == first.prompt.n_tokens
    for rate in (stats.generation_tps, stats.prompt_tps):
        assert rate > 0 and math.isfinite(rate)
    assert 0 < stats.time_to_first_token < 30
    assert stats.peak_rss_bytes > 50_000_000


def test_streamed_events_add_up_to_the_result(smol_worker):
    events = list(smol_worker.stream(single_turn(Kind.INSTRUCT, True, "Name three colours.", GREEDY)))
    assert isinstance(events[0], PromptReady) and isinstance(events[-1], Finished)
    tokens = [e for e in events if isinstance(e, TokenEvent)]
    assert "".join(t.text for t in tokens) == events[-1].text
    times = [t.t for t in tokens]
    assert times == sorted(times)


def test_stop_sequence_and_max_tokens(gemma_worker):
    counting = "1, 2, 3, 4, 5, 6,"
    stopped = gemma_worker.generate(
        single_turn(Kind.BASE, False, counting, GenerationParams(max_tokens=40, temperature=0, stop=("10",)))
    )
    assert stopped.stats.stop_reason == "stop"
    assert "10" not in stopped.text and "9" in stopped.text
    limited = gemma_worker.generate(
        single_turn(
            Kind.BASE, False, counting, GenerationParams(max_tokens=5, temperature=0, ignore_eos=True)
        )
    )
    assert limited.stats.generated_tokens == 5 and limited.stats.stop_reason == "length"


def test_chat_reuses_the_kv_cache_between_turns(smol_worker):
    smol_worker.reset()
    params = GenerationParams(max_tokens=16, temperature=0)
    history = [Message("user", "Hello!")]
    first = smol_worker.generate(chat_turn(True, history, params))
    assert first.prompt.n_reused == 0
    history += [Message("assistant", first.text), Message("user", "And what is 2 + 2?")]
    second = smol_worker.generate(chat_turn(True, history, params))
    assert second.prompt.n_reused > first.prompt.n_tokens // 2
    assert second.stats.prompt_tokens_evaluated == second.prompt.n_tokens - second.prompt.n_reused
    smol_worker.reset()
    third = smol_worker.generate(chat_turn(True, history, params))
    assert third.prompt.n_reused == 0
    assert third.stats.prompt_tokens_evaluated == third.prompt.n_tokens == second.prompt.n_tokens


def test_base_model_chats_through_a_transcript(gemma_worker):
    request = chat_turn(False, [Message("user", "Hi there")], GenerationParams(max_tokens=30, temperature=0))
    assert request.mode is PromptMode.TRANSCRIPT and "\nUser:" in request.params.stop
    finished = gemma_worker.generate(request)
    assert finished.prompt.text == "User: Hi there\nAssistant:"
    assert "\nUser:" not in finished.text


def test_cancel_stops_generation_early(smol_worker):
    params = GenerationParams(max_tokens=500, temperature=0, ignore_eos=True)
    stream = smol_worker.stream(single_turn(Kind.BASE, False, "Count to a thousand:", params))
    seen = 0
    for event in stream:
        if isinstance(event, TokenEvent):
            seen += 1
            if seen == 3:
                smol_worker.cancel()
        if isinstance(event, Finished):
            assert event.stats.stop_reason == "cancelled"
            assert event.stats.generated_tokens < 20
    # The worker serves the next request normally.
    assert smol_worker.generate(single_turn(Kind.BASE, False, "Hi", GREEDY)).stats.stop_reason != "cancelled"


def test_abandoned_stream_is_drained(smol_worker):
    params = GenerationParams(max_tokens=500, temperature=0, ignore_eos=True)
    for event in smol_worker.stream(single_turn(Kind.BASE, False, "Count:", params)):
        if isinstance(event, TokenEvent):
            break
    stopped = smol_worker.drain()
    assert stopped is not None and stopped.stats.stop_reason == "cancelled"
    assert smol_worker.tokenize("still alive") != []


def test_prompt_longer_than_context_is_refused(smol_worker):
    long_text = "word " * 2000
    with pytest.raises(PromptError, match="context holds 1024"):
        smol_worker.generate(single_turn(Kind.BASE, False, long_text, GREEDY))
    assert smol_worker.generate(single_turn(Kind.BASE, False, "Hi", GREEDY)).stats.generated_tokens > 0


def test_empty_prompt_is_refused(gemma_worker):
    with pytest.raises(PromptError):
        gemma_worker.generate(GenerateRequest((), PromptMode.COMPLETION, GREEDY))


def test_worker_killed_mid_answer_is_reported_and_parent_survives(smol):
    worker = WorkerModel(smol.path, LoadOptions(n_ctx=512), label="victim")
    params = GenerationParams(max_tokens=400, temperature=0, ignore_eos=True)
    with pytest.raises(WorkerError, match="victim was killed by SIGKILL while generating"):
        for event in worker.stream(single_turn(Kind.BASE, False, "Count:", params)):
            if isinstance(event, TokenEvent):
                os.kill(worker.pid, signal.SIGKILL)
    worker.close()
    with WorkerModel(smol.path, LoadOptions(n_ctx=512)) as fresh:
        assert fresh.generate(single_turn(Kind.BASE, False, "Hi", GREEDY)).stats.generated_tokens > 0


def test_load_failure_is_an_error_not_a_crash(tmp_path):
    # Validation normally stops this earlier; the worker still reports llama.cpp's refusal as an error.
    with pytest.raises(WorkerError, match="could not load"):
        WorkerModel(tmp_path / "missing.gguf", LoadOptions(n_ctx=256))


def test_profile_settings_reach_llama_cpp(smol):
    """A q8_0 KV cache takes about 34/64 of the f16 one; a smaller micro-batch shrinks the compute buffer."""
    facts = {}
    for kv, ubatch in (("f16", 512), ("q8_0", 128)):
        options = LoadOptions(n_ctx=1024, kv_cache_type=kv, n_ubatch=ubatch, flash_attn="on")
        with WorkerModel(smol.path, options) as worker:
            facts[kv] = worker.facts
            finished = worker.generate(single_turn(Kind.BASE, False, "One, two, three,", GREEDY))
            assert finished.stats.generated_tokens > 0
    assert facts["q8_0"].kv_cache_bytes / facts["f16"].kv_cache_bytes == pytest.approx(34 / 64, rel=0.02)
    assert facts["q8_0"].compute_buffer_bytes < facts["f16"].compute_buffer_bytes
    with pytest.raises(WorkerError, match="KV-cache type"):
        WorkerModel(smol.path, LoadOptions(n_ctx=256, kv_cache_type="q9"))


def test_the_worker_sends_tokens_in_batches_and_flushes_before_other_events():
    from ondevice.runtime.protocol import Finished, PromptReady, TokenBatch, TokenEvent
    from ondevice.runtime.worker import _stream

    class Pipe:
        def __init__(self):
            self.sent = []

        def send(self, message):
            self.sent.append(message)

    ready, done = PromptReady("p", 1, 0), Finished("abc", (1, 2, 3), None, None)  # type: ignore[arg-type]
    tokens = [TokenEvent(c, i, i / 1000) for i, c in enumerate("abc")]
    pipe = Pipe()
    _stream(pipe, [ready, *tokens, done], 0.03)  # type: ignore[arg-type]
    # The first token leaves at once; the next two come within the interval and travel together,
    # flushed ahead of Finished.
    assert pipe.sent == [ready, tokens[0], TokenBatch((tokens[1], tokens[2])), done]
    pipe = Pipe()
    _stream(pipe, [ready, *tokens, done], 0.0)  # type: ignore[arg-type]
    assert pipe.sent == [ready, *tokens, done]  # no batching asked for: one message a token

    def failing():
        yield tokens[0]
        yield tokens[1]
        raise WorkerError("boom")

    pipe = Pipe()
    with pytest.raises(WorkerError):
        _stream(pipe, failing(), 0.03)  # type: ignore[arg-type]
    assert pipe.sent == [tokens[0], tokens[1]]  # made before the failure, still delivered
