"""The default calibration text for `ondevice imatrix`: the module docstrings of Python's standard library.

Every Python install has them, so the default works offline; they are English prose about programs,
with code, names and numbers mixed in, much like what the bundled models are asked about. They are
another text than `ondevice eval`'s default, `pydoc_data.topics` (the language reference's sections,
written for `help()`), which is left out here: a matrix tuned on the text that then judges it would
flatter it; a docstring that shares a line with those topics (pdb's, say) is left out too. Read from
the source files (never imported: some modules act on import), in path order.
"""

from __future__ import annotations

import ast
import inspect
import io
import sys
import sysconfig
import tokenize
from pathlib import Path

from .errors import OndeviceError
from .texts import pydoc_topics, read_text

# Tests, demos and the eval text's own package stay out.
_SKIPPED_DIRS = frozenset(
    {
        "site-packages",
        "dist-packages",
        "test",
        "tests",
        "idle_test",
        "pydoc_data",
        "__pycache__",
        "turtledemo",
    }
)
MIN_CHARS = 10_000  # less than this is a stripped install, not a calibration text
SHARED_LINE = 40  # lines at least this long that also appear in the eval text mark a shared passage


def default_dataset() -> str:
    """The name `imatrix.datasets` records for the default text."""
    return f"python{sys.version_info.major}.{sys.version_info.minor}-stdlib-module-docstrings"


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_docstrings(root: Path | None = None) -> str:
    """Each standard-library module's docstring (packages' `__init__` included), blank-line separated."""
    root = root or stdlib_root()
    eval_lines = long_lines(eval_text())
    docs = []
    for path in sorted(root.rglob("*.py")):
        if _SKIPPED_DIRS.intersection(path.relative_to(root).parts[:-1]):
            continue
        doc = _module_docstring(path)
        if doc and not long_lines(doc) & eval_lines:
            docs.append(doc)
    text = "\n\n".join(docs)
    if len(text) < MIN_CHARS:
        raise OndeviceError(
            f"this Python's standard library ({root}) has too few module docstrings for a calibration "
            "text (its sources are not installed?); pass one with --text FILE"
        )
    return text


def eval_text() -> str:
    """`ondevice eval`'s default text; "" on a Python without it (eval needs --text there, and nothing
    can overlap)."""
    try:
        return pydoc_topics()
    except ImportError:
        return ""


def long_lines(text: str) -> set[str]:
    """The text's lines of SHARED_LINE characters or more, stripped: what two texts share verbatim."""
    return {line for line in (raw.strip() for raw in text.splitlines()) if len(line) >= SHARED_LINE}


def _module_docstring(path: Path) -> str:
    """The module's docstring, read from its first tokens: parsing only the head keeps this fast."""
    try:
        with path.open("rb") as handle:
            for token in tokenize.tokenize(io.BytesIO(handle.read()).readline):
                if token.type in (tokenize.ENCODING, tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE):
                    continue
                if token.type != tokenize.STRING:
                    return ""
                value = ast.literal_eval(token.string)
                return inspect.cleandoc(value).strip() if isinstance(value, str) else ""
    except (OSError, SyntaxError, ValueError, tokenize.TokenError):
        return ""
    return ""


def load_calibration_text(path: str | Path | None = None) -> tuple[str, str]:
    """The calibration text and its name for `imatrix.datasets`: a file (named by its file name), or
    the standard library's module docstrings."""
    return (stdlib_docstrings(), default_dataset()) if path is None else read_text(path)
