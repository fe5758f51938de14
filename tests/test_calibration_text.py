"""The default calibration text: offline, sizeable, stable, and another text than eval's default."""

from __future__ import annotations

import sys

import pytest

from ondevice.calibration_text import (
    MIN_CHARS,
    default_dataset,
    eval_text,
    load_calibration_text,
    long_lines,
    stdlib_docstrings,
)
from ondevice.errors import OndeviceError
from ondevice.measure.quality import load_text


def test_default_text_is_the_stdlib_docstrings_and_shares_no_passage_with_evals_text():
    text, dataset = load_calibration_text(None)
    assert (
        dataset
        == default_dataset()
        == f"python{sys.version_info[0]}.{sys.version_info[1]}-stdlib-module-docstrings"
    )
    assert len(text) > 20 * MIN_CHARS and text == stdlib_docstrings()  # read the same way every time
    evaluated, _ = load_text(None)
    assert eval_text() == evaluated  # the text it keeps clear of is the one eval really uses
    assert long_lines(text) and not long_lines(text) & long_lines(evaluated)
    assert "Python" in text and "pydoc_data" not in dataset


def test_a_file_is_named_by_its_file_name_and_a_missing_one_is_one_line(tmp_path):
    path = tmp_path / "wiki.train.raw"
    path.write_text("Some text.\n", encoding="utf-8")
    assert load_calibration_text(path) == ("Some text.\n", "wiki.train.raw")
    with pytest.raises(OndeviceError, match=r"cannot read the text .*missing\.txt"):
        load_calibration_text(tmp_path / "missing.txt")


def test_a_stdlib_without_sources_is_refused_clearly(tmp_path):
    (tmp_path / "mod.py").write_text('"""Short."""\n', encoding="utf-8")
    with pytest.raises(OndeviceError, match="too few module docstrings"):
        stdlib_docstrings(tmp_path)


def test_docstrings_come_from_the_source_without_importing_it(tmp_path):
    body = "An important module. " * 600
    (tmp_path / "a.py").write_text(
        f'# comment\n"""{body}"""\nraise SystemExit("imported!")\n', encoding="utf-8"
    )
    (tmp_path / "b.py").write_text("x = 1\n", encoding="utf-8")  # no docstring
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "c.py").write_text(f'"""{body}tests"""\n', encoding="utf-8")  # skipped
    assert stdlib_docstrings(tmp_path) == body.strip()
