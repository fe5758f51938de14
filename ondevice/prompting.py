"""Turn a request into the exact text a model sees.

Instruct models get their own chat template, rendered in Jinja's immutable sandbox (templates come
from model files, which anyone can write). Base models get raw text to continue, or for a
conversation a plain transcript frame that ends where the assistant's reply should begin.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

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


def _raise_exception(message: str) -> None:
    raise jinja2.TemplateError(message)


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined
    )
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


def render_chat_template(
    template: str, messages: list[Message], bos_token: str = "", eos_token: str = ""
) -> str:
    """Render a model's chat template with the generation prompt appended."""
    try:
        compiled = _environment().from_string(template)
        return compiled.render(
            messages=[m.as_dict() for m in messages],
            add_generation_prompt=True,
            bos_token=bos_token,
            eos_token=eos_token,
        )
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
