"""Turn a request into the exact text a model sees.

Instruct models get their own chat template, rendered in Jinja's immutable sandbox (templates come
from model files, which anyone can write). Base models get raw text to continue, or for a
conversation a plain transcript frame that ends where the assistant's reply should begin.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import PromptError


class PromptMode(str, Enum):
    COMPLETION = "completion"  # the text as is: what a base model is for
    CHAT_TEMPLATE = "chat_template"  # the model's own template: what an instruct model expects
    TRANSCRIPT = "transcript"  # a "User:/Assistant:" frame, for chatting with a model without a template


@dataclass(frozen=True)
class Message:
    role: str  # "system", "user" or "assistant"
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


TRANSCRIPT_STOPS = ("\nUser:", "\nSystem:")


# A real chat template renders in milliseconds into about the size of its messages. One from a model
# file may loop for hours or build gigabytes: rendering stops at these budgets.
RENDER_SECONDS = 5.0
RENDER_MAX_CHARS = 8_000_000


class _OverBudget(Exception):
    pass


def _raise_exception(message: str) -> None:
    raise jinja2.TemplateError(message)


class _BudgetedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with `*` and `**` checked before they build a huge string or number."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                sized = isinstance(seq, (str, list, tuple)) and isinstance(times, int)
                if sized and len(seq) * max(times, 0) > RENDER_MAX_CHARS:
                    raise _OverBudget(f"it builds a sequence of {len(seq) * times:,} items")
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > 1000:
            raise _OverBudget(f"it raises a number to the power {right}")
        return super().call_binop(context, operator, left, right)


def _environment() -> ImmutableSandboxedEnvironment:
    env = _BudgetedSandbox(trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


@contextlib.contextmanager
def _time_budget(seconds: float) -> Iterator[None]:
    """Interrupt the block after `seconds` (on the main thread, where model workers render; other
    threads rely on the output and operator budgets)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise _OverBudget(f"it ran for over {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def render_chat_template(
    template: str, messages: list[Message], bos_token: str = "", eos_token: str = ""
) -> str:
    """Render a model's chat template with the generation prompt appended, within the budgets."""
    try:
        with _time_budget(RENDER_SECONDS):
            compiled = _environment().from_string(template)
            parts, size = [], 0
            for part in compiled.generate(
                messages=[m.as_dict() for m in messages],
                add_generation_prompt=True,
                bos_token=bos_token,
                eos_token=eos_token,
            ):
                size += len(part)
                if size > RENDER_MAX_CHARS:
                    raise _OverBudget(f"its output passed {RENDER_MAX_CHARS:,} characters")
                parts.append(part)
            return "".join(parts)
    except _OverBudget as exc:
        raise PromptError(f"the model's chat template was stopped: {exc}") from None
    except jinja2.TemplateError as exc:
        raise PromptError(f"the model's chat template failed: {exc}") from None
    except Exception as exc:  # the template comes from a model file: any failure of it is the file's
        raise PromptError(f"the model's chat template failed: {type(exc).__name__}: {exc}") from None


def render_transcript(messages: list[Message]) -> str:
    """A chat as plain text a base model can continue; generation stops at TRANSCRIPT_STOPS."""
    lines = []
    for message in messages:
        label = {"system": "System", "user": "User", "assistant": "Assistant"}.get(message.role)
        if label is None:
            raise PromptError(f"unknown message role {message.role!r}")
        lines.append(f"{label}: {message.content.strip()}")
    lines.append("Assistant:")
    return "\n".join(lines)


def render(mode: PromptMode, messages: list[Message], template: str | None, bos: str, eos: str) -> str:
    """The prompt text for `messages` in `mode`."""
    if not messages:
        raise PromptError("empty prompt: no messages")
    if mode is PromptMode.COMPLETION:
        return "".join(m.content for m in messages)
    if mode is PromptMode.CHAT_TEMPLATE:
        if not template:
            raise PromptError("this model has no chat template; use it as a base model")
        return render_chat_template(template, messages, bos, eos)
    return render_transcript(messages)
