"""ondevice.prompting: chat templates render sandboxed, transcripts and completions as documented."""

from __future__ import annotations

import re

import pytest

from ondevice.errors import PromptError
from ondevice.prompting import (
    TRANSCRIPT_STOPS,
    Message,
    PromptMode,
    render,
    render_chat_template,
    render_transcript,
)

CHATML = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

CHAT = [Message("system", "You are helpful."), Message("user", "Hi there")]


def test_chatml_template_renders_messages_and_generation_prompt() -> None:
    text = render_chat_template(CHATML, CHAT, bos_token="<s>")
    assert text == (
        "<s><|im_start|>system\nYou are helpful.<|im_end|>\n"
        "<|im_start|>user\nHi there<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_bos_and_eos_are_passed_through() -> None:
    template = "[{{ bos_token }}]{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}"
    assert render_chat_template(template, CHAT, bos_token="<s>", eos_token="</s>") == (
        "[<s>]You are helpful.</s>Hi there</s>"
    )


def test_bos_and_eos_default_to_empty() -> None:
    assert render_chat_template("[{{ bos_token }}|{{ eos_token }}]", CHAT) == "[|]"


def test_blocks_are_trimmed_like_transformers() -> None:
    """trim_blocks/lstrip_blocks: a block tag on its own line leaves no blank line behind."""
    template = (
        "{% for m in messages %}\n  {% if m.role == 'user' %}\n{{ m.content }}\n  {% endif %}\n{% endfor %}"
    )
    assert render_chat_template(template, CHAT) == "Hi there\n"


def test_common_template_features_work_in_the_sandbox() -> None:
    template = (
        "{% set ns = namespace(system=false) %}"
        "{% for m in messages %}{% if m.role == 'system' %}{% set ns.system = true %}{% endif %}{% endfor %}"
        "{{ ns.system }}|{{ messages[1]['content'] | trim | upper }}|{{ messages[0].content.strip() }}"
        "|{{ strftime_now('%Y') }}"
    )
    system, content, stripped, year = render_chat_template(template, CHAT).split("|")
    assert (system, content, stripped) == ("True", "HI THERE", "You are helpful.")
    assert re.fullmatch(r"\d{4}", year)


def test_raise_exception_becomes_prompt_error() -> None:
    template = "{% if messages[0].role != 'user' %}{{ raise_exception('x') }}{% endif %}"
    with pytest.raises(PromptError) as info:
        render_chat_template(template, CHAT)
    assert str(info.value) == "the model's chat template failed: x"


def test_undefined_variable_is_prompt_error() -> None:
    with pytest.raises(PromptError, match="'tools' is undefined"):
        render_chat_template("{{ tools }}", CHAT)


def test_template_syntax_error_is_prompt_error() -> None:
    with pytest.raises(PromptError, match="chat template failed"):
        render_chat_template("{% for m in messages %}", CHAT)


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ joiner.__init__.__globals__.os }}",
        "{{ lipsum.__globals__['os'] }}",
        "{{ self.__init__.__globals__ }}",
        "{{ '{0.__class__}'.format(1) }}",
    ],
)
def test_sandbox_blocks_attribute_escapes(template: str) -> None:
    with pytest.raises(PromptError) as info:
        render_chat_template(template, CHAT)
    message = str(info.value)
    assert "is unsafe" in message
    for leaked in ("<class", "<module", "__builtins__", "object at 0x"):
        assert leaked not in message


@pytest.mark.parametrize(
    "template",
    [
        "{% set _ = messages.append(1) %}x",
        "{{ messages.pop() }}",
        "{% set _ = messages[0].update({'role': 'system'}) %}x",
        "{% set d = {} %}{% set _ = d.update({'a': 1}) %}{{ d }}",
    ],
)
def test_immutable_sandbox_refuses_mutation(template: str) -> None:
    messages = [Message("user", "hi")]
    with pytest.raises(PromptError, match="is unsafe"):
        render_chat_template(template, messages)
    assert messages == [Message("user", "hi")]


@pytest.mark.parametrize(
    "template",
    ["{{ 1 / 0 }}", "{{ 'a' + 1 }}", "{{ '%d' % 'x' }}", "{{ range(200000) | list | length }}"],
)
def test_template_runtime_errors_become_prompt_error(template: str) -> None:
    """A broken template from a model file is a PromptError, not an arbitrary exception (which would end
    the worker process's serve loop, since it only catches OndeviceError)."""
    with pytest.raises(PromptError, match="chat template failed"):
        render_chat_template(template, CHAT)


def test_transcript_format() -> None:
    messages = [
        Message("system", " Be brief. "),
        Message("user", "What is 2+2?\n"),
        Message("assistant", "4"),
        Message("user", "And 3+3?"),
    ]
    assert render_transcript(messages) == (
        "System: Be brief.\nUser: What is 2+2?\nAssistant: 4\nUser: And 3+3?\nAssistant:"
    )


def test_transcript_is_what_transcript_mode_renders() -> None:
    assert render(PromptMode.TRANSCRIPT, CHAT, CHATML, "<s>", "</s>") == render_transcript(CHAT)


def test_transcript_stops_end_the_assistant_turn() -> None:
    text = render_transcript([Message("user", "a"), Message("assistant", "b"), Message("user", "c")])
    turns = text.split("Assistant: b", 1)[1]
    assert turns.startswith(TRANSCRIPT_STOPS[0])


def test_transcript_unknown_role() -> None:
    with pytest.raises(PromptError, match="unknown message role 'tool'"):
        render_transcript([Message("user", "hi"), Message("tool", "{}")])


def test_completion_mode_returns_the_raw_text() -> None:
    text = "  Once upon a time\n"
    assert render(PromptMode.COMPLETION, [Message("user", text)], CHATML, "<s>", "</s>") == text


def test_completion_mode_joins_contents_without_framing() -> None:
    messages = [Message("user", "Q: 1+1?\nA: 2\n"), Message("user", "Q: 2+2?\nA:")]
    assert render(PromptMode.COMPLETION, messages, None, "", "") == "Q: 1+1?\nA: 2\nQ: 2+2?\nA:"


@pytest.mark.parametrize("mode", list(PromptMode))
def test_empty_messages_are_refused(mode: PromptMode) -> None:
    with pytest.raises(PromptError, match="empty prompt"):
        render(mode, [], CHATML, "", "")


@pytest.mark.parametrize("template", [None, ""])
def test_chat_template_mode_without_template(template: str | None) -> None:
    with pytest.raises(PromptError, match="no chat template"):
        render(PromptMode.CHAT_TEMPLATE, CHAT, template, "", "")


def test_chat_template_mode_uses_the_template() -> None:
    assert render(PromptMode.CHAT_TEMPLATE, CHAT, CHATML, "<s>", "") == render_chat_template(
        CHATML, CHAT, bos_token="<s>"
    )
