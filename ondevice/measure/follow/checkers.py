"""Verifiable instructions: one checker per instruction type, each a pure function of the answer.

Strict and loose follow IFEval (Zhou et al., 2023): strict checks the answer as given; loose also
accepts it with its first and/or last line removed and with Markdown asterisks stripped, so a
"Sure, here it is:" preamble or bold markers do not hide an answer that follows the instruction.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

_WORD = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?")
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
_BULLET = re.compile(r"^\s*(?:[*\-•+])\s+\S", re.MULTILINE)
_NUMBERED = re.compile(r"^\s*\d+[.)]\s+\S", re.MULTILINE)
_PLACEHOLDER = re.compile(r"\[[^\[\]\n]+\]")
_HIGHLIGHT = re.compile(r"\*[^\n*]+\*")
_TITLE = re.compile(r"<<[^\n<>]+>>")


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def sentences(text: str) -> int:
    """Sentences ending in ., ! or ?, plus a final one without end punctuation."""
    stripped = text.strip()
    if not stripped:
        return 0
    ends = len(_SENTENCE_END.findall(stripped))
    return ends + (0 if stripped[-1] in ".!?" else 1)


def paragraphs(text: str) -> list[str]:
    """Blocks separated by blank lines; a block holding only a <<title>> is not a paragraph."""
    blocks = [p.strip() for p in re.split(r"\n\s*\n", text.strip())]
    return [p for p in blocks if p and not _TITLE.fullmatch(p)]


def _contains_word(text: str, word: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(word)}(?![A-Za-z0-9])", text, re.IGNORECASE) is not None


def _strip_fences(text: str) -> str:
    text = text.strip()
    text = re.sub(r"^```[A-Za-z]*\s*\n?", "", text)
    return re.sub(r"\n?```$", "", text).strip()


def max_words(text: str, n: int) -> bool:
    return 0 < len(words(text)) <= n


def min_words(text: str, n: int) -> bool:
    return len(words(text)) >= n


def max_sentences(text: str, n: int) -> bool:
    return 0 < sentences(text) <= n


def include(text: str, keywords: list[str]) -> bool:
    return all(_contains_word(text, k) for k in keywords)


def exclude(text: str, keywords: list[str]) -> bool:
    return bool(text.strip()) and not any(_contains_word(text, k) for k in keywords)


def frequency(text: str, word: str, n: int) -> bool:
    return sum(1 for w in words(text) if w.lower() == word.lower()) >= n


def lowercase(text: str) -> bool:
    return any(c.isalpha() for c in text) and text == text.lower()


def uppercase(text: str) -> bool:
    return any(c.isalpha() for c in text) and text == text.upper()


def json_format(text: str) -> bool:
    try:
        json.loads(_strip_fences(text))
    except ValueError:
        return False
    return True


def bullets(text: str, n: int) -> bool:
    return len(_BULLET.findall(text)) == n


def numbered(text: str, n: int) -> bool:
    return len(_NUMBERED.findall(text)) == n


def starts_with(text: str, phrase: str) -> bool:
    return text.strip().lower().startswith(phrase.lower())


def ends_with(text: str, phrase: str) -> bool:
    return text.strip().lower().endswith(phrase.lower())


def no_commas(text: str) -> bool:
    return bool(text.strip()) and "," not in text and "，" not in text


def paragraph_count(text: str, n: int) -> bool:
    return len(paragraphs(text)) == n


def title(text: str) -> bool:
    return _TITLE.search(text) is not None


def quotation(text: str) -> bool:
    stripped = text.strip()
    return len(stripped) > 1 and stripped[0] == stripped[-1] == '"'


def placeholders(text: str, n: int) -> bool:
    return len(_PLACEHOLDER.findall(text)) >= n


def highlights(text: str, n: int) -> bool:
    return len([h for h in _HIGHLIGHT.findall(text) if h.strip("* ")]) >= n


def postscript(text: str, marker: str = "P.S.") -> bool:
    return re.search(rf"^\s*{re.escape(marker)}", text, re.MULTILINE | re.IGNORECASE) is not None


# The instruction types, by the name prompts use; arguments come from the prompt's instruction.
CHECKERS: dict[str, Callable[..., bool]] = {
    "length:max_words": max_words,
    "length:min_words": min_words,
    "length:max_sentences": max_sentences,
    "keywords:include": include,
    "keywords:exclude": exclude,
    "keywords:frequency": frequency,
    "case:lowercase": lowercase,
    "case:uppercase": uppercase,
    "format:json": json_format,
    "format:bullets": bullets,
    "format:numbered": numbered,
    "format:title": title,
    "format:quotation": quotation,
    "format:placeholders": placeholders,
    "format:highlights": highlights,
    "format:paragraphs": paragraph_count,
    "start:phrase": starts_with,
    "end:phrase": ends_with,
    "punctuation:no_commas": no_commas,
    "content:postscript": postscript,
}


def loose_variants(text: str) -> list[str]:
    """The answer and IFEval's loose rewrites of it."""
    lines = text.split("\n")
    trimmed = [
        text,
        "\n".join(lines[1:]).strip(),
        "\n".join(lines[:-1]).strip(),
        "\n".join(lines[1:-1]).strip(),
    ]
    return [v for t in trimmed for v in (t, t.replace("*", ""))]


def check(kind: str, text: str, args: dict[str, Any]) -> tuple[bool, bool]:
    """(strict, loose) for one instruction."""
    checker = CHECKERS[kind]
    strict = bool(checker(text, **args))
    loose = strict or any(checker(v, **args) for v in loose_variants(text) if v.strip())
    return strict, loose
