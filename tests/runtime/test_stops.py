"""ondevice.runtime.stops: streamed text is cut at the first stop sequence, and nothing shown is retracted."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from ondevice.runtime.stops import StopScanner

STOPS = ("\nUser:", "\nSystem:")


def feed_all(scanner: StopScanner, pieces: list[str]) -> tuple[list[str], bool]:
    """Feed pieces until a stop appears; return everything emitted (finish included) and whether it hit."""
    shown = []
    for piece in pieces:
        out, hit = scanner.feed(piece)
        shown.append(out)
        if hit:
            return shown, True
    shown.append(scanner.finish(""))
    return shown, False


def test_no_stops_passes_everything_through() -> None:
    scanner = StopScanner(())
    assert scanner.feed("Hello") == ("Hello", False)
    assert scanner.feed("\nUser:") == ("\nUser:", False)
    assert scanner.finish("") == ""
    assert scanner.text == "Hello\nUser:"


def test_empty_stop_strings_are_ignored() -> None:
    scanner = StopScanner(("",))
    assert scanner.feed("abc") == ("abc", False)
    assert scanner.text == "abc"


def test_stop_in_one_piece() -> None:
    scanner = StopScanner(STOPS)
    assert scanner.feed("The answer is 4.") == ("The answer is 4.", False)
    assert scanner.feed("\nUser: more") == ("", True)
    assert scanner.text == "The answer is 4."


def test_stop_inside_a_piece_emits_the_text_before_it() -> None:
    scanner = StopScanner(STOPS)
    assert scanner.feed("4.\nUser: next question") == ("4.", True)
    assert scanner.text == "4."


def test_stop_split_across_feeds() -> None:
    scanner = StopScanner(STOPS)
    assert scanner.feed("Sure.") == ("Sure.", False)
    assert scanner.feed("\nUs") == ("", False)  # could begin "\nUser:": held back
    assert scanner.feed("er:") == ("", True)
    assert scanner.text == "Sure."


def test_stop_split_into_single_characters() -> None:
    scanner = StopScanner(STOPS)
    shown, hit = feed_all(scanner, list("ok\nSystem: x"))
    assert hit
    assert "".join(shown) == scanner.text == "ok"


def test_held_back_prefix_is_released_when_it_is_not_a_stop() -> None:
    scanner = StopScanner(STOPS)
    assert scanner.feed("line one\nUs") == ("line one", False)
    assert scanner.feed("ually") == ("\nUsually", False)
    assert scanner.text == "line one\nUsually"


def test_partial_overlap_releases_only_what_cannot_begin_a_stop() -> None:
    scanner = StopScanner(("abc",))
    assert scanner.feed("xab") == ("x", False)
    assert scanner.feed("ab") == ("ab", False)  # "abab": the last "ab" may still become "abc"
    assert scanner.feed("c") == ("", True)
    assert scanner.text == "xab"


def test_finish_flushes_held_back_text() -> None:
    scanner = StopScanner(STOPS)
    assert scanner.feed("end\nSys") == ("end", False)
    assert scanner.finish("") == "\nSys"
    assert scanner.text == "end\nSys"


def test_finish_adds_the_final_text() -> None:
    scanner = StopScanner(STOPS)
    scanner.feed("caf")
    assert scanner.finish("é") == "é"
    assert scanner.text == "café"


def test_finish_after_a_stop_returns_nothing() -> None:
    scanner = StopScanner(STOPS)
    scanner.feed("done\nUser: and more")
    assert scanner.finish("tail") == ""
    assert scanner.text == "done"


def test_text_excludes_the_stop_and_everything_after() -> None:
    scanner = StopScanner(("</s>",))
    out, hit = scanner.feed("first</s>second</s>third")
    assert (out, hit) == ("first", True)
    assert scanner.text == "first"


def test_earliest_of_several_stops_wins() -> None:
    scanner = StopScanner(("\nUser:", "###", "\nSystem:"))
    out, hit = scanner.feed("a###b\nUser:c")
    assert hit
    assert out == scanner.text == "a"


def test_earliest_stop_wins_when_both_complete_in_one_feed() -> None:
    scanner = StopScanner(("\nSystem:", "\nUser:"))
    assert scanner.feed("a\nUs") == ("a", False)
    assert scanner.feed("er:\nSystem:") == ("", True)
    assert scanner.text == "a"


# --- properties -------------------------------------------------------------------------------------

# Text built from the stops' own characters and pieces, so random text often begins, nearly makes and
# completes stop sequences.
ALPHABET = "\nUserSystm:# ab"
FIXED_STOPS = ("\nUser:", "\nSystem:", "###")  # none is a substring of another
FRAGMENTS = ("\nUser:", "\nSystem:", "###", "\nUs", "er:", "\nSys", "tem", "##", "\n")
texts = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(alphabet=ALPHABET, max_size=4)), max_size=12
).map("".join)


def splits(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    bounds = [0, *points, len(text)]
    return [text[a:b] for a, b in pairwise(bounds)]


@given(
    text=texts,
    stops=st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=6), max_size=3),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=12),
)
def test_emitted_text_always_equals_text(text: str, stops: list[str], cuts: list[int]) -> None:
    scanner = StopScanner(tuple(stops))
    shown, hit = feed_all(scanner, splits(text, cuts))
    assert "".join(shown) == scanner.text
    assert scanner.text == text[: len(scanner.text)]
    # Nothing after a complete stop is ever shown.
    if hit:
        assert any(text[len(scanner.text) :].startswith(s) for s in stops)
    else:
        assert scanner.text == text


@given(
    text=texts,
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=12),
)
def test_cut_is_at_the_first_stop_however_the_text_is_split(text: str, cuts: list[int]) -> None:
    starts = [i for i in (text.find(s) for s in FIXED_STOPS) if i >= 0]
    expected = text[: min(starts)] if starts else text
    scanner = StopScanner(FIXED_STOPS)
    shown, hit = feed_all(scanner, splits(text, cuts))
    assert hit == bool(starts)
    assert "".join(shown) == scanner.text == expected
