"""What a chat line means, as Ollama reads it: a slash command, a message, or a `\"\"\"` block.

Textual-free and click-free: the terminal chat and the TUI chat read lines through it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

BLOCK = '"""'


class ChatCommand(str, Enum):
    EXIT = "/exit"
    RESET = "/reset"
    SYSTEM = "/system"
    HELP = "/help"
    UNKNOWN = "/unknown"


ALIASES = {"/bye": ChatCommand.EXIT, "/clear": ChatCommand.RESET, "/?": ChatCommand.HELP}

HELP = f"""\
/system TEXT   set the system prompt (the conversation goes on); /system alone clears it
/reset         start the conversation over (also /clear)
/help          this help (also /?)
/exit          leave (also /bye, or Ctrl-D)
{BLOCK}           begin and end a message of several lines
Ctrl-C stops an answer"""


@dataclass(frozen=True)
class ChatLine:
    """A message (`command` None) or a command with its argument (`text`)."""

    text: str
    command: ChatCommand | None = None
    word: str = ""  # the command as typed, to name an unknown one


def parse_line(text: str, block: bool = False) -> ChatLine:
    text = text.strip()
    if block or not text.startswith("/"):
        return ChatLine(text)
    word, _, rest = text.partition(" ")
    known = {c.value: c for c in ChatCommand if c is not ChatCommand.UNKNOWN}
    command = known.get(word) or ALIASES.get(word) or ChatCommand.UNKNOWN
    return ChatLine(rest.strip(), command, word)


def read_message(read: Callable[[str], str], prompt: str = "you> ", more: str = "... ") -> tuple[str, bool]:
    """One line, or every line from an opening `\"\"\"` to a line ending in `\"\"\"`; and whether it
    was such a block (a block is always a message, even one that starts with a slash).

    `read` is `input`-like; its EOFError and KeyboardInterrupt pass through.
    """
    first = read(prompt)
    if not first.lstrip().startswith(BLOCK):
        return first, False
    body = first.lstrip()[len(BLOCK) :]
    lines = []
    while not body.rstrip().endswith(BLOCK):
        lines.append(body)
        body = read(more)
    lines.append(body.rstrip()[: -len(BLOCK)])
    return "\n".join(lines).strip("\n"), True
