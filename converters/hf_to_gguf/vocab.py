"""Tokenizers from tokenizer.json into GGUF metadata, without running a tokenizer.

Two shapes cover the supported families:

- byte-level BPE (Llama 3, SmolLM2, Qwen2, Phi-4-mini): llama.cpp's "gpt2" model. llama.cpp splits
  text with a fixed regex per named pre-tokenizer, so the pre-tokenizer in tokenizer.json is matched
  against the regexes llama.cpp knows (an unknown one is refused rather than tokenized differently).
- SentencePiece-style BPE with byte fallback (Gemma, Llama 2, Phi-3.5): llama.cpp's "llama" model,
  which merges the adjacent pair whose joined text has the highest score. Scores are derived from the
  merge ranks (earlier merge, higher score) so llama.cpp merges in the order the BPE model does.

Special token ids, add_bos/add_eos, merges and the chat template come from gguf-py's SpecialVocab.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf

from ondevice.errors import OndeviceError

TokenType = gguf.TokenType


class TokenizerError(OndeviceError):
    """The checkpoint's tokenizer cannot be carried into GGUF faithfully."""


# The pieces a pre-tokenizer splits with, as tokenizer.json spells them.
_GPT2 = "gpt2-bytelevel"  # ByteLevel(use_regex=True): GPT-2's regex
_DIGITS = "individual-digits"  # Digits(individual_digits=True)
_LLAMA3 = (
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)
_QWEN2 = (
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)
# GPT-4o's o200k split (Phi-4-mini): llama.cpp's "gpt-4o" rewrites its letter classes without \p{M}.
_GPT4O = (
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+"
    "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)
# llama.cpp's pre-tokenizer names (tokenizer.ggml.pre) for the splits it implements.
PRE_TOKENIZERS: dict[tuple[str, ...], str] = {
    (_GPT2,): "gpt-2",
    (_DIGITS, _GPT2): "smollm",
    (_LLAMA3,): "llama-bpe",
    (_QWEN2,): "qwen2",
    (_GPT4O,): "gpt-4o",
}
_BYTE_TOKEN = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")


@dataclass
class Vocab:
    """What goes under tokenizer.ggml.*: the model, pre-tokenizer, and tokens with scores and types."""

    model: str  # "gpt2" or "llama"
    pre: str
    tokens: list[str]
    scores: list[float] | None
    types: list[int]
    add_space_prefix: bool = False

    def add_to(self, writer: gguf.GGUFWriter, directory: Path, n_vocab: int) -> None:
        writer.add_tokenizer_model(self.model)
        writer.add_tokenizer_pre(self.pre)
        writer.add_token_list(self.tokens)
        if self.scores is not None:
            writer.add_token_scores(self.scores)
        writer.add_token_types(self.types)
        writer.add_add_space_prefix(self.add_space_prefix)
        special = gguf.SpecialVocab(directory, load_merges=self.model == "gpt2", n_vocab=n_vocab)
        if self.model == "gpt2" and "bos" not in special.add_special_token:
            # Neither tokenizer.json's post-processor nor tokenizer_config.json adds a BOS, so
            # transformers adds none; said explicitly, as llama.cpp adds one for some pre-tokenizers
            # (llama-bpe) when the GGUF is silent.
            special.add_special_token["bos"] = False
        special.add_to_gguf(writer, quiet=True)


def load_tokenizer_json(directory: Path) -> dict[str, Any]:
    path = directory / "tokenizer.json"
    if not path.is_file():
        raise TokenizerError(
            f"{directory} has no tokenizer.json (only tokenizer.json tokenizers are supported)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TokenizerError(f"tokenizer.json is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise TokenizerError("tokenizer.json has no model section")
    return data


def build_vocab(directory: Path, n_vocab: int) -> Vocab:
    """The GGUF vocabulary for the tokenizer.json in `directory`, padded to the model's `n_vocab` rows."""
    data = load_tokenizer_json(directory)
    model = data["model"]
    if model.get("type") != "BPE":
        raise TokenizerError(f"tokenizer model {model.get('type')!r} is not supported (BPE only)")
    if model.get("byte_fallback"):
        return _sentencepiece_bpe(data, n_vocab)
    return _byte_level_bpe(data, n_vocab)


def _id_table(data: dict[str, Any], n_vocab: int) -> tuple[list[str | None], dict[int, dict[str, Any]]]:
    vocab: dict[str, int] = data["model"]["vocab"]
    added_list = data.get("added_tokens", [])
    ids = [*vocab.values(), *(t.get("id") if isinstance(t, dict) else t for t in added_list)]
    bad = [i for i in ids if isinstance(i, bool) or not isinstance(i, int) or i < 0]
    if bad:
        raise TokenizerError(f"tokenizer.json has token ids that are not ids: {bad[:5]!r}")
    if len(set(vocab.values())) != len(vocab):
        raise TokenizerError("tokenizer.json gives two tokens the same id")
    added = {int(t["id"]): t for t in added_list}
    size = max([n_vocab, *(i + 1 for i in ids)])
    if size > n_vocab:
        raise TokenizerError(f"the tokenizer has ids up to {size - 1} but the model has only {n_vocab} rows")
    table: list[str | None] = [None] * size
    for text, index in vocab.items():
        table[index] = text
    for index, token in added.items():
        table[index] = token["content"]
    return table, added


def _type_of(index: int, text: str, added: dict[int, dict[str, Any]], unk: str | None) -> int:
    if index in added:
        return TokenType.CONTROL if added[index].get("special") else TokenType.USER_DEFINED
    if unk is not None and text == unk:
        return TokenType.UNKNOWN
    return TokenType.NORMAL


def _byte_level_bpe(data: dict[str, Any], n_vocab: int) -> Vocab:
    pieces = _pre_tokenizer_pieces(data.get("pre_tokenizer"))
    pre = PRE_TOKENIZERS.get(tuple(pieces))
    if pre is None:
        known = ", ".join(PRE_TOKENIZERS.values())
        raise TokenizerError(
            f"unknown pre-tokenizer {pieces!r}: llama.cpp would split text differently (known: {known})"
        )
    table, added = _id_table(data, n_vocab)
    tokens, types = [], []
    for index, text in enumerate(table):
        if text is None:
            tokens.append(f"[PAD{index}]")
            types.append(TokenType.UNUSED)
            continue
        tokens.append(text)
        types.append(_type_of(index, text, added, None))
    return Vocab("gpt2", pre, tokens, None, [int(t) for t in types])


def _pre_tokenizer_pieces(node: dict[str, Any] | None) -> list[str]:
    if node is None:
        return []
    kind = node.get("type")
    if kind == "Sequence":
        return [piece for child in node.get("pretokenizers", []) for piece in _pre_tokenizer_pieces(child)]
    if kind == "ByteLevel":
        return [_GPT2] if node.get("use_regex", True) else []
    if kind == "Digits" and node.get("individual_digits"):
        return [_DIGITS]
    if kind == "Split" and isinstance(node.get("pattern"), dict) and "Regex" in node["pattern"]:
        return [node["pattern"]["Regex"]]
    return [json.dumps(node, sort_keys=True)]


def _sentencepiece_bpe(data: dict[str, Any], n_vocab: int) -> Vocab:
    model = data["model"]
    table, added = _id_table(data, n_vocab)
    vocab: dict[str, int] = model["vocab"]
    merges = model.get("merges", [])
    # A token's score is minus the rank of the first merge that forms it, so llama.cpp prefers the
    # pair the BPE model would merge first.
    rank: dict[int, int] = {}
    for position, merge in enumerate(merges):
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        formed = vocab.get(left + right)
        if formed is not None and formed not in rank:
            rank[formed] = position
    normalizer = json.dumps(data.get("normalizer"))
    prepends = '"Prepend"' in normalizer or '"prepend_scheme": "always"' in json.dumps(
        data.get("pre_tokenizer")
    )
    unk = model.get("unk_token")
    tokens, scores, types = [], [], []
    for index, text in enumerate(table):
        if text is None:
            tokens.append(f"[PAD{index}]")
            scores.append(-1e9)
            types.append(TokenType.UNUSED)
            continue
        tokens.append(text)
        # A token no merge forms must lose to every merge (the BPE model never builds it from a pair).
        scores.append(-float(rank.get(index, len(merges))))
        kind = _type_of(index, text, added, unk)
        if kind == TokenType.NORMAL and _BYTE_TOKEN.match(text):
            kind = TokenType.BYTE
        types.append(kind)
    return Vocab("llama", "default", tokens, scores, [int(t) for t in types], add_space_prefix=prepends)
