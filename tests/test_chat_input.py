"""ondevice.chat_input: slash commands and Ollama's \"\"\" multi-line messages."""

from __future__ import annotations

import pytest

from ondevice.chat_input import ChatCommand, parse_line, read_message


def reader(*lines: str):
    queue = list(lines)

    def read(prompt: str) -> str:
        if not queue:
            raise EOFError
        return queue.pop(0)

    return read


@pytest.mark.parametrize(
    ("line", "command", "text"),
    [
        ("Hello there", None, "Hello there"),
        ("/system Be brief.", ChatCommand.SYSTEM, "Be brief."),
        ("/system", ChatCommand.SYSTEM, ""),
        ("/help", ChatCommand.HELP, ""),
        ("/?", ChatCommand.HELP, ""),
        ("/bye", ChatCommand.EXIT, ""),
        ("/clear", ChatCommand.RESET, ""),
        ("/bogus x", ChatCommand.UNKNOWN, "x"),
    ],
)
def test_parse_line(line, command, text):
    parsed = parse_line(line)
    assert (parsed.command, parsed.text) == (command, text)


def test_a_block_reads_until_a_line_ends_with_three_quotes():
    assert read_message(reader('"""Write a haiku', "about the sea", 'in English"""')) == (
        "Write a haiku\nabout the sea\nin English",
        True,
    )
    assert read_message(reader('"""', "one", "", "three", '"""')) == ("one\n\nthree", True)
    assert read_message(reader('"""one line"""')) == ("one line", True)
    assert read_message(reader("plain")) == ("plain", False)


def test_a_block_cut_by_end_of_input_raises_eof():
    with pytest.raises(EOFError):
        read_message(reader('"""unfinished'))


def test_a_block_starting_with_a_slash_is_a_message():
    text, block = read_message(reader('"""', "/system is a file", '"""'))
    assert block and parse_line(text, block).command is None
