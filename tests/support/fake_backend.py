"""A deterministic stand-in for a model worker, for fast UI tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from ondevice.errors import WorkerError
from ondevice.kinds import Kind
from ondevice.live import ModelSpec
from ondevice.prompting import PromptMode
from ondevice.runtime.engine import Backend, Event
from ondevice.runtime.protocol import (
    Finished,
    GenerateRequest,
    GenerationStats,
    ModelFacts,
    PromptReady,
    StopReason,
    TokenEvent,
)


def facts(chat_template: str | None) -> ModelFacts:
    return ModelFacts(
        n_ctx=2048,
        n_ctx_train=8192,
        n_vocab=1000,
        n_threads=2,
        n_gpu_layers=0,
        model_size_bytes=10_000_000,
        model_buffer_bytes=10_000_000,
        kv_cache_bytes=1_000_000,
        compute_buffer_bytes=1_000_000,
        output_buffer_bytes=0,
        load_seconds=0.01,
        bos_text="<s>",
        eos_text="</s>",
        add_bos=True,
        chat_template=chat_template,
        system_info="fake",
        pid=0,
    )


class FakeBackend(Backend):
    """Answers with a fixed script, one word per token, at a fixed 50 tokens/s of fake time.

    `crash_after` raises WorkerError after that many tokens, as a dying worker would.
    `gate`, when given, makes each token wait for it, so a test can stop mid-answer.
    """

    def __init__(
        self,
        answer: str = "The sky is blue because air scatters blue light more than red light.",
        chat_template: str | None = "{{ messages }}",
        crash_after: int | None = None,
        gate: threading.Event | None = None,
    ) -> None:
        self.facts = facts(chat_template)
        self.answer = answer
        self.crash_after = crash_after
        self.gate = gate
        self.requests: list[GenerateRequest] = []
        self.closed = False
        self._cancel = threading.Event()

    def stream(self, request: GenerateRequest) -> Iterator[Event]:
        self.requests.append(request)
        self._cancel.clear()
        if request.mode is PromptMode.CHAT_TEMPLATE:
            prompt = "".join(f"<|{m.role}|>{m.content}" for m in request.messages) + "<|assistant|>"
        else:
            prompt = "\n".join(m.content for m in request.messages)
        yield PromptReady(prompt, len(prompt.split()), 0)
        words = [w + " " for w in self.answer.split()][: request.params.max_tokens]
        text, reason = "", StopReason.EOS
        for i, word in enumerate(words):
            if self.gate is not None:
                self.gate.wait(5)
            if self.crash_after is not None and i == self.crash_after:
                raise WorkerError("the model worker for fake was killed by SIGKILL while generating")
            if self._cancel.is_set():
                reason = StopReason.CANCELLED
                break
            text += word
            yield TokenEvent(word, i, 0.1 + i * 0.02)
        n = len(text.split())
        stats = GenerationStats(
            prompt_tokens=len(prompt.split()),
            prompt_tokens_evaluated=len(prompt.split()),
            generated_tokens=n,
            prompt_seconds=0.1,
            generation_seconds=max(n - 1, 0) * 0.02,
            time_to_first_token=0.1,
            peak_rss_bytes=123_000_000,
            stop_reason=reason,
        )
        yield Finished(text, tuple(range(n)), PromptReady(prompt, len(prompt.split()), 0), stats)

    def cancel(self) -> None:
        self._cancel.set()

    def close(self) -> None:
        self.closed = True

    def rss_bytes(self) -> int:
        return 0 if self.closed else 123_000_000


def fake_spec(label: str, kind: Kind = Kind.INSTRUCT, backend: FakeBackend | None = None) -> ModelSpec:
    backend = backend or FakeBackend(chat_template="{{ messages }}" if kind is Kind.INSTRUCT else None)
    return ModelSpec(
        ref=label, label=label, kind=kind, quant="Q4_0", size_bytes=50_000_000, open=lambda: backend
    )
