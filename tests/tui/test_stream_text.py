"""The streaming answer widget: incremental word wrap, following the end, re-wrapping on resize."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.cells import cell_len
from textual.app import App, ComposeResult

from ondevice.tui.stream_text import StreamText, wrap_spans

TEXT = st.text(alphabet="ab cdefg  \n界é-", max_size=200)


def drawn(text: str, spans) -> list[str]:
    return [text[b:e].rstrip(" ") for b, e in spans]


@settings(max_examples=300, deadline=None)
@given(text=TEXT, width=st.integers(2, 30), data=st.data())
def test_appending_wraps_like_wrapping_the_whole_text(text, width, data):
    cut = data.draw(st.integers(0, len(text)))
    spans = wrap_spans(text[:cut], 0, width)
    spans[-1:] = wrap_spans(text, spans[-1][0], width)
    assert spans == wrap_spans(text, 0, width)


@settings(max_examples=300, deadline=None)
@given(text=TEXT, width=st.integers(2, 30))
def test_lines_fit_and_cover_the_text(text, width):
    spans = wrap_spans(text, 0, width)
    assert all(cell_len(line) <= width for line in drawn(text, spans))
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    for (_, end), (begin, _) in itertools.pairwise(spans):
        assert begin == end or (begin == end + 1 and text[end] == "\n")
    # Only the blanks at a soft break and the newlines are not drawn.
    assert "".join(drawn(text, spans)).replace(" ", "") == text.replace(" ", "").replace("\n", "")


def test_words_move_whole_and_long_words_are_cut():
    text = "The quick brown fox\n\nSupercalifragilistic"
    assert drawn(text, wrap_spans(text, 0, 10)) == ["The quick", "brown fox", "", "Supercalif", "ragilistic"]


def test_control_characters_are_shown_not_sent_to_the_terminal():
    answer = StreamText("red: \x1b[31m, bell: \x07\r\n\ttab\x9b")
    assert answer.text == "red: \u241b[31m, bell: \u2407\u240d\n    tab\ufffd"
    answer.load_text("a\x00b")
    assert answer.text == "a\u2400b"


class OneAnswer(App):
    CSS = "StreamText { height: 5; scrollbar-gutter: stable; }"

    def compose(self) -> ComposeResult:
        yield StreamText()


async def test_widget_wraps_follows_the_end_and_rewraps_on_resize():
    app = OneAnswer()
    async with app.run_test(size=(22, 8)) as pilot:
        answer = app.query_one(StreamText)
        width = answer.scrollable_content_region.width
        for word in ("alpha ", "beta ", "gamma ", "delta ", "epsilon ") * 4:
            answer.append(word)
        await pilot.pause()
        assert all(cell_len(line) <= width for line in answer.lines)
        assert len(answer.lines) > 5
        assert answer.scroll_y == answer.max_scroll_y > 0  # it followed the end

        answer.scroll_home(animate=False, immediate=True)
        answer.append("zeta eta theta iota kappa ")
        await pilot.pause()
        assert answer.scroll_y == 0  # the reader scrolled up: appending leaves them there

        narrow_lines = len(answer.lines)
        await pilot.resize_terminal(60, 8)
        await pilot.pause()
        assert len(answer.lines) < narrow_lines
        assert " ".join(answer.lines).split() == answer.text.split()
        assert answer.get_selection(_everything())[0].split() == answer.text.split()

        answer.load_text("")
        assert answer.lines == [""] and answer.text == ""


def _everything():
    from textual.geometry import Offset
    from textual.selection import Selection

    return Selection(Offset(0, 0), None)


class Bubble(App):
    CSS = "StreamText { height: auto; overflow: hidden hidden; }"

    def compose(self) -> ComposeResult:
        yield StreamText(auto_scroll=False)


async def test_with_auto_height_it_grows_instead_of_scrolling():
    app = Bubble()
    async with app.run_test(size=(30, 20)) as pilot:
        answer = app.query_one(StreamText)
        for word in ("alpha ", "beta ", "gamma ", "delta ") * 5:
            answer.append(word)
            await pilot.pause()
        assert len(answer.lines) > 3
        assert answer.size.height == len(answer.lines) and answer.scroll_y == 0
