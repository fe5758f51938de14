"""The terminal UI, driven by Textual's Pilot with fake backends (and once with the real models)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from textual.app import App
from textual.widgets import Input, Label, SelectionList, Static

from ondevice.kinds import Kind
from ondevice.live import RunMode
from ondevice.prompting import PromptMode
from ondevice.runtime.protocol import GenerationParams
from ondevice.tui.app import OndeviceApp
from ondevice.tui.chat import Bubble, ChatScreen
from ondevice.tui.dialogs import HELP, HelpScreen, PromptsScreen
from ondevice.tui.message_box import MessageBox
from ondevice.tui.picker import Choice, PickerScreen
from tests.support.fake_backend import FakeBackend, fake_spec

ANSWER = "The sky is blue because air scatters blue light more than red light."
SIZE = (120, 36)


def two_model_app(**kwargs) -> tuple[OndeviceApp, FakeBackend, FakeBackend]:
    base, instruct = FakeBackend(chat_template=None), FakeBackend(**kwargs)
    app = OndeviceApp(
        [fake_spec("base-model", Kind.BASE, base), fake_spec("instruct-model", Kind.INSTRUCT, instruct)],
        defaults=GenerationParams(temperature=0, max_tokens=64),
    )
    return app, base, instruct


async def settle(app: OndeviceApp, pilot) -> None:
    await app.workers.wait_for_complete()
    await pilot.pause(0.05)


async def ask(app: OndeviceApp, pilot, prompt: str) -> None:
    app.compare.query_one("#prompt", Input).value = prompt
    app.compare.query_one("#prompt", Input).focus()
    await pilot.press("enter")
    await settle(app, pilot)


async def test_submit_streams_every_model_into_its_column():
    app, base, instruct = two_model_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert [c.status for c in app.compare.columns] == ["ready", "ready"]
        await ask(app, pilot, "Why is the sky blue?")
        columns = app.compare.columns
        assert [c.status for c in columns] == ["done", "done"]
        assert [c.answer.text.strip() for c in columns] == [ANSWER, ANSWER]
        assert all(c.live.tokens == len(ANSWER.split()) for c in columns)
        assert all(c.live.tokens_per_second == pytest.approx(50.0) for c in columns)
        # The base model got the raw text, the instruct model its template.
        assert base.requests[0].mode is PromptMode.COMPLETION
        assert instruct.requests[0].mode is PromptMode.CHAT_TEMPLATE
        assert columns[0].prompt_text == "Why is the sky blue?"
        assert columns[1].prompt_text == "<|user|>Why is the sky blue?<|assistant|>"
        stats = str(columns[1].query_one(".stats").render())
        assert "50.0 tok/s" in stats and "mem 123.0 MB" in stats and "done" in stats


async def test_settings_reach_the_request_and_bad_values_are_refused():
    app, base, _ = two_model_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.compare.query_one("#temperature", Input).value = "0.7"
        app.compare.query_one("#max-tokens", Input).value = "5"
        app.compare.query_one("#seed", Input).value = "42"
        await ask(app, pilot, "Hello")
        params = base.requests[-1].params
        assert (params.temperature, params.max_tokens, params.seed) == (0.7, 5, 42)
        assert base.requests[-1].send_every == 0.1  # the worker batches tokens at the redraw rate
        assert app.compare.columns[0].live.tokens == 5
        app.compare.query_one("#temperature", Input).value = "hot"
        await ask(app, pilot, "Hello again")
        assert len(base.requests) == 1


async def test_escape_stops_generation():
    gate = threading.Event()
    app, _, _ = two_model_app(gate=gate)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.compare.action_toggle_mode()  # concurrent: both start at once
        app.compare.query_one("#prompt", Input).value = "Tell me a story"
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert app.compare.columns[1].status == "generating"
        await pilot.press("escape")
        gate.set()
        await settle(app, pilot)
        column = app.compare.columns[1]
        assert column.status == "stopped" and column.live.final.stop_reason == "cancelled"
        assert column.live.tokens < len(ANSWER.split())


async def test_toggle_mode_and_rerun():
    app, _, instruct = two_model_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert app.compare.mode is RunMode.SEQUENTIAL
        await pilot.press("ctrl+t")
        assert app.compare.mode is RunMode.CONCURRENT
        assert "models share the cores" in str(app.compare.query_one("#mode", Label).render())
        await ask(app, pilot, "First")
        await pilot.press("ctrl+r")
        await settle(app, pilot)
        assert [r.messages[-1].content for r in instruct.requests] == ["First", "First"]
        assert [c.status for c in app.compare.columns] == ["done", "done"]


async def test_f2_shows_the_exact_prompts():
    app, _, _ = two_model_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await ask(app, pilot, "Name a colour")
        await pilot.press("f2")
        assert isinstance(app.screen, PromptsScreen)
        assert app.screen.prompts == [
            ("base-model", "Name a colour"),
            ("instruct-model", "<|user|>Name a colour<|assistant|>"),
        ]
        await pilot.press("escape")
        assert not isinstance(app.screen, PromptsScreen)
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)


async def test_a_worker_dying_mid_answer_shows_in_its_column_only():
    app, base, _ = two_model_app(crash_after=3)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await ask(app, pilot, "Hello")
        crashed, healthy = app.compare.columns[1], app.compare.columns[0]
        assert crashed.status == "error" and "killed by SIGKILL" in crashed.error
        assert "error: the model worker" in str(crashed.query_one(".stats").render())
        assert crashed.answer.text.split() == ANSWER.split()[:3]
        assert healthy.status == "done"
        await ask(app, pilot, "Still there?")
        assert healthy.status == "done" and len(base.requests) == 2


async def test_closing_the_app_closes_every_backend():
    app, base, instruct = two_model_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
    assert base.closed and instruct.closed


async def test_chat_broadcast_target_reset_and_save(isolated_home):
    app, base, instruct = two_model_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("f3")
        chat = app.screen
        assert isinstance(chat, ChatScreen)
        chat.query_one("#chat-input", MessageBox).value = "Hi"
        await pilot.press("enter")
        await settle(app, pilot)
        bubbles = list(chat.query(Bubble))
        assert [b.who for b in bubbles] == ["you", "base-model", "instruct-model"]
        assert [b.text.strip() for b in bubbles] == ["Hi", ANSWER, ANSWER]
        assert base.requests[-1].mode is PromptMode.TRANSCRIPT  # a base model chats through a transcript

        await pilot.press("ctrl+b")  # to: base-model only
        await pilot.press("ctrl+b")  # to: instruct-model only
        assert "instruct-model" in str(chat.query_one("#target", Label).render())
        chat.query_one("#chat-input", MessageBox).value = "And then?"
        await pilot.press("enter")
        await settle(app, pilot)
        assert len(base.requests) == 1 and len(instruct.requests) == 2
        # The second turn carries the first: user, assistant, user.
        assert [m.role for m in instruct.requests[-1].messages] == ["user", "assistant", "user"]

        await pilot.press("ctrl+s")
        await pilot.press("ctrl+o")
        # The names carry the second of saving, which may differ between the two.
        saved = {p.suffix: p for p in (isolated_home / "transcripts").iterdir()}
        assert sorted(saved) == [".json", ".md"]
        data = json.loads(saved[".json"].read_text())
        assert [t["role"] for t in data["turns"]] == ["user", "assistant", "assistant", "user", "assistant"]
        assert data["sampling"]["temperature"] == 0 and data["sampling"]["max_tokens"] == 64
        assert "**instruct-model**" in saved[".md"].read_text()

        await pilot.press("ctrl+n")
        assert not list(chat.query(Bubble)) and all(not h for h in chat.histories.values())
        chat.query_one("#system", Input).value = "Be brief."
        chat.query_one("#system", Input).focus()
        await pilot.press("enter")
        chat.query_one("#chat-input", MessageBox).value = "Hello"
        chat.query_one("#chat-input", MessageBox).focus()
        await pilot.press("enter")
        await settle(app, pilot)
        assert instruct.requests[-1].messages[0].content == "Be brief."
        # A new system prompt keeps the conversation, as Ollama's /system does; /help is help.
        chat.query_one("#chat-input", MessageBox).value = "/system Be very brief."
        await pilot.press("enter")
        assert chat.transcript.system == "Be very brief." and len(list(chat.query(Bubble))) == 2
        chat.query_one("#chat-input", MessageBox).value = "Again"
        await pilot.press("enter")
        await settle(app, pilot)
        sent = instruct.requests[-1].messages
        assert [m.role for m in sent] == ["system", "user", "assistant", "user"]
        assert sent[0].content == "Be very brief." and sent[1].content == "Hello"
        chat.query_one("#chat-input", MessageBox).value = "/help"
        await pilot.press("enter")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.press("escape")
        assert app.screen is app.compare


async def test_chat_message_spans_lines_with_ctrl_j_and_enter_sends():
    app, _, instruct = two_model_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("f3")
        chat = app.screen
        assert isinstance(chat, ChatScreen)
        await pilot.press("ctrl+b", "ctrl+b")  # to the instruct model alone
        await pilot.press(*"Two lines:", "ctrl+j", *"one", "shift+enter", *"two")
        box = chat.query_one("#chat-input", MessageBox)
        assert app.focused is box and box.value == "Two lines:\none\ntwo" and not instruct.requests
        await pilot.press("enter")
        await settle(app, pilot)
        assert instruct.requests[-1].messages[-1].content == "Two lines:\none\ntwo"
        assert box.value == "" and next(b.text.strip() for b in chat.query(Bubble)) == "Two lines:\none\ntwo"
        assert "Ctrl+J starts a new line" in HELP


async def test_picker_swaps_models_and_keeps_loaded_ones():
    base, instruct, extra = (
        FakeBackend(chat_template=None),
        FakeBackend(),
        FakeBackend(answer="Extra answer."),
    )
    specs = {
        "base-model": fake_spec("base-model", Kind.BASE, base),
        "instruct-model": fake_spec("instruct-model", Kind.INSTRUCT, instruct),
        "extra-model": fake_spec("extra-model", Kind.INSTRUCT, extra),
    }
    app = OndeviceApp(
        [specs["base-model"], specs["instruct-model"]],
        choices=lambda: [Choice(ref, "fake") for ref in specs],
        open_spec=lambda ref: specs[ref],
    )
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+t")
        app.compare.query_one("#prompt", Input).value = "half-typed"
        app.compare.query_one("#temperature", Input).value = "0.3"
        await pilot.press("f4")
        picker = app.screen
        assert isinstance(picker, PickerScreen)
        selection = picker.query_one(SelectionList)
        selection.deselect("base-model")
        selection.select("extra-model")
        await pilot.press("enter")
        assert any("opening extra-model" in n.message for n in app._notifications)  # feedback at once
        await settle(app, pilot)
        await settle(app, pilot)
        assert [c.spec.label for c in app.compare.columns] == ["instruct-model", "extra-model"]
        assert app.compare.mode is RunMode.CONCURRENT  # the mode and what was typed are kept
        assert app.compare.query_one("#prompt", Input).value == "half-typed"
        assert app.compare.query_one("#temperature", Input).value == "0.3"
        assert base.closed and not instruct.closed
        await ask(app, pilot, "Hi")
        assert app.compare.columns[1].answer.text.strip() == "Extra answer."


def test_compare_screen_snapshot(snap_compare):
    app, _, _ = two_model_app()

    async def run_before(pilot) -> None:
        await settle(app, pilot)
        await ask(app, pilot, "Why is the sky blue?")

    assert snap_compare(app, run_before=run_before, terminal_size=SIZE)


def test_chat_screen_snapshot(snap_compare):
    app, _, _ = two_model_app()

    async def run_before(pilot) -> None:
        await settle(app, pilot)
        await pilot.press("f3")
        app.screen.query_one("#chat-input", MessageBox).value = "Hi"
        await pilot.press("enter")
        await settle(app, pilot)

    assert snap_compare(app, run_before=run_before, terminal_size=SIZE)


@pytest.mark.models
async def test_real_models_fill_both_columns(smol, gemma):
    from ondevice.cli.tui_launch import build_app
    from ondevice.runtime.protocol import LoadOptions

    app = build_app(
        [gemma, smol], GenerationParams(temperature=0, max_tokens=24), LoadOptions(n_ctx=512), None
    )
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(200):
            await pilot.pause(0.1)
            if all(c.status == "ready" for c in app.compare.columns):
                break
        await ask(app, pilot, "Explain in one sentence why the sky is blue.")
        for column in app.compare.columns:
            assert column.status == "done", column.error
            assert column.answer.text.strip()
            assert column.live.tokens_per_second > 0
        pids = [c.backend.pid for c in app.compare.columns]
    import psutil

    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in pids)


async def test_a_reply_that_comes_before_its_bubble_is_composed_is_kept():
    bubble = Bubble("instruct-model", "", "assistant")
    bubble.add("Hello ")
    bubble.add("world.", footer="50.0 tok/s · 2 tok · eos")

    class OneBubble(App):
        def compose(self):
            yield bubble

    async with OneBubble().run_test() as pilot:
        await pilot.pause()
        assert bubble.text == "Hello world." and bubble.has_class("finished")
        assert "50.0 tok/s" in str(bubble.query_one(".bubble-footer", Static).render())
        bubble.add(" More.")
        assert bubble.text == "Hello world. More."


async def test_names_and_answers_with_brackets_and_escapes_are_shown_as_written():
    odd = "[/b]odd[link=x] \x1b[31m"
    backend = FakeBackend(answer=f"{odd} answer")
    app = OndeviceApp([fake_spec(odd, Kind.INSTRUCT, backend)], defaults=GenerationParams(max_tokens=8))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await ask(app, pilot, "Hi")
        column = app.compare.columns[0]
        assert column.status == "done"
        name = str(column.query_one(".model-name", Static).render())
        assert name == "[/b]odd[link=x] \u241b[31m"  # as written, the ESC made visible
        assert "\x1b" not in "".join(column.answer.lines) and "\u241b[31m" in column.answer.text
        await pilot.press("f3")  # the chat's target line names the model too
        assert isinstance(app.screen, ChatScreen)


class SlowToClose(FakeBackend):
    """A worker that takes a second to end, and notes whether its answer was cancelled first."""

    def __init__(self) -> None:
        super().__init__()
        self.cancelled_before_close = False

    def close(self) -> None:
        self.cancelled_before_close = self._cancel.is_set()
        time.sleep(1.0)
        super().close()


async def test_quitting_cancels_first_then_closes_the_workers_side_by_side():
    backends = [SlowToClose() for _ in range(3)]
    app = OndeviceApp([fake_spec(f"m{i}", Kind.INSTRUCT, b) for i, b in enumerate(backends)])
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        started = time.monotonic()
    assert time.monotonic() - started < 2.0  # not three seconds one after another
    assert all(b.closed and b.cancelled_before_close for b in backends)


async def test_sparklines_are_labelled():
    app, _, _ = two_model_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        labels = [str(c.query_one(".speed-label", Static).render()) for c in app.compare.columns]
        assert labels == ["tok/s", "tok/s"]
