"""A scrolling, word-wrapped answer that grows cheaply while it streams.

The UI shares the cores with the model's decode threads, so an update must cost little: each
append wraps only the last line again and redraws only the lines that changed, where a Static
re-wraps the whole answer and makes the screen lay itself out again on every chunk.
"""

from __future__ import annotations

import re

from rich.cells import cell_len
from rich.segment import Segment
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.selection import Selection
from textual.strip import Strip

from ..terminal_text import visible_controls

Span = tuple[int, int]  # a wrapped line: text[begin:end], trailing blanks not drawn

# A word with the blanks after it, or blanks that open a paragraph.
_WORD = re.compile(r"[^ ]+ *| +")


def wrap_spans(text: str, start: int, width: int) -> list[Span]:
    """Greedy word wrap of `text[start:]`, which begins a line, into lines of at most `width` cells.

    Newlines end paragraphs (the newline itself is in no line); a word wider than a line is cut.
    Wrapping is local to the last line: the lines before it never change when text is appended,
    which is what lets StreamText wrap again only from the last line's start.
    """
    width = max(width, 1)
    spans: list[Span] = []
    pos = start
    while True:
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        line_start, used = pos, 0
        for match in _WORD.finditer(text, pos, end):
            begin, stop = match.span()
            visible = text[begin:stop].rstrip(" ")
            drawn = cell_len(visible)
            if used and used + drawn > width:
                spans.append((line_start, begin))
                line_start, used = begin, 0
            if drawn > width:  # a word longer than a line: cut it where the cells run out
                for index in range(begin, begin + len(visible)):
                    cells = cell_len(text[index])
                    if used and used + cells > width:
                        spans.append((line_start, index))
                        line_start, used = index, 0
                    used += cells
            else:
                used += drawn
            used += stop - begin - len(visible)  # the blanks after it, a cell each
        spans.append((line_start, end))
        if end == len(text):
            return spans
        pos = end + 1


class StreamText(ScrollView):
    """An answer that only grows while it streams; follows the end unless the user scrolled up.

    With `auto_scroll=False` it never scrolls itself: for `height: auto`, where it grows instead.
    """

    def __init__(self, text: str = "", *, auto_scroll: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.auto_scroll = auto_scroll
        self._text = _printable(text)
        self._spans: list[Span] = [(0, len(self._text))]  # wrapped for real once it has a width
        self._wrap_width = 0

    @property
    def text(self) -> str:
        return self._text

    @property
    def lines(self) -> list[str]:
        """The answer as wrapped for the column's width."""
        return [self._text[b:e].rstrip(" ") for b, e in self._spans]

    def load_text(self, text: str) -> None:
        self._text = _printable(text)
        self._rewrap()

    def append(self, text: str) -> None:
        if not text:
            return
        follow = self.auto_scroll and self.is_vertical_scroll_end
        self._text += _printable(text)
        if self._width() != self._wrap_width:
            self._rewrap()
        else:
            first = len(self._spans) - 1
            self._spans[first:] = wrap_spans(self._text, self._spans[first][0], self._wrap_width)
            self.virtual_size = Size(self._wrap_width, len(self._spans))
            self.refresh_lines(first, len(self._spans) - first)
        if follow:
            # forced: the scrollbar that allows scrolling appears only at the next layout
            self.scroll_end(animate=False, immediate=True, x_axis=False, force=True)

    def _width(self) -> int:
        return self.scrollable_content_region.width or self.size.width or 1

    def _rewrap(self) -> None:
        self._wrap_width = self._width()
        self._spans = wrap_spans(self._text, 0, self._wrap_width)
        self.virtual_size = Size(self._wrap_width, len(self._spans))
        self.refresh()

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        # For `height: auto` (a chat bubble): the lines the text takes at the width offered.
        return len(self._spans) if width == self._wrap_width else len(wrap_spans(self._text, 0, width))

    def on_resize(self) -> None:
        if self._width() != self._wrap_width:
            self._rewrap()

    def render_line(self, y: int) -> Strip:
        index = self.scroll_offset.y + y
        style = self.rich_style
        width = self.scrollable_content_region.width
        if index >= len(self._spans):
            return Strip.blank(width, style)
        begin, end = self._spans[index]
        line = self._text[begin:end].rstrip(" ")
        segments = [Segment(line, style)]
        selection = self.text_selection
        if selection is not None and (span := selection.get_span(index)) is not None:
            low, high = span
            high = len(line) if high == -1 else min(high, len(line))
            picked = style + self.screen.get_component_rich_style("screen--selection")
            segments = [
                Segment(line[:low], style),
                Segment(line[low:high], picked),
                Segment(line[high:], style),
            ]
        return Strip(segments).crop_extend(0, width, style)

    def get_selection(self, selection: Selection) -> tuple[str, str] | None:
        return selection.extract("\n".join(self.lines)), "\n"

    def selection_updated(self, selection: Selection | None) -> None:
        self.refresh()


def _printable(text: str) -> str:
    return visible_controls(text).replace("\t", "    ")  # a tab has no fixed width in a cell grid
