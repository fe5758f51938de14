"""Model output shown on a terminal: control characters become visible, text stays as it is."""

from ondevice.terminal_text import visible_controls


def test_escape_sequences_and_other_controls_show_as_pictures():
    shown = visible_controls("\x1b]52;c;aGk=\x07 \x1b[2J red\x00\x7f\x9b")
    assert "\x1b" not in shown and "\x07" not in shown and "\x9b" not in shown
    assert shown == "\u241b]52;c;aGk=\u2407 \u241b[2J red\u2400\u2421\ufffd"


def test_newlines_tabs_and_ordinary_text_are_kept():
    text = "Paris, l'Étoile:\n\t- 東京 ✓"
    assert visible_controls(text) == text
