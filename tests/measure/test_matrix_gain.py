"""eval's report puts each level's plain and importance-matrix files side by side."""

from __future__ import annotations

import dataclasses

from ondevice.measure.results import QualityResult
from ondevice.measure.stats import Estimate
from tests.support.runs import LADDER, record, saved_eval


def _with_matrix_files():
    """The saved eval of the made-up ladder, plus Q4_K_M and Q2_K files made with a matrix, listed after
    every plain file (as a user would type them last)."""
    run = saved_eval()
    extra = [
        (record("smollm2-135m-instruct:Q2_K-imat", "Q2_K-imat", 88.2, 5.24), 0.0810, 0.861),
        (record("smollm2-135m-instruct:Q4_K_M-imat", "Q4_K_M-imat", 105.5, 6.17), 0.0110, 0.951),
        # Another model's Q4_K_M file made with a matrix: no plain file of its own here.
        (
            dataclasses.replace(
                LADDER[2],
                name="gemma:Q4_K_M-imat",
                quant="Q4_K_M-imat",
                path="/g.gguf",
                architecture="gemma3",
            ),
            0.05,
            0.9,
        ),
    ]
    quality = [
        QualityResult(
            m, 2040, Estimate(14.5, 0.3), kld=Estimate(kld, kld / 30), same_top=Estimate(top, 0.004)
        )
        for m, kld, top in extra
    ]
    return dataclasses.replace(run, quality=[*run.quality, *quality])


def test_each_matrix_file_is_compared_with_the_plain_file_of_its_level():
    text = _with_matrix_files().to_markdown()
    section = text.split("What the importance matrix bought")[1].split("\n\n")[1]
    lines = [line for line in section.splitlines() if line.startswith("| Q")]
    assert [line.split("|")[1].strip() for line in lines] == ["Q2_K", "Q4_K_M"]
    q2 = [c.strip() for c in lines[0].split("|")[1:-1]]
    assert q2[2:5] == ["0.13500", "0.08100", f"{0.081 / 0.135:.3f}"]
    q4 = [c.strip() for c in lines[1].split("|")[1:-1]]
    assert q4[2:5] == ["0.02120", "0.01100", f"{0.011 / 0.0212:.3f}"]
    assert "gemma" not in section  # its plain file was not measured


def test_quality_and_comparison_tables_list_a_levels_two_files_together():
    text = _with_matrix_files().to_markdown()
    quality, comparison = text.split("What the importance matrix bought")[0], text.split("Comparison")[1]
    for table in (quality, comparison):
        names = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| smollm2")]
        names = [n for n in names if not n.endswith("(reference)")]
        assert names == [
            "smollm2-135m-instruct:Q8_0",
            "smollm2-135m-instruct:Q4_K_M",
            "smollm2-135m-instruct:Q4_K_M-imat",
            "smollm2-135m-instruct:Q2_K",
            "smollm2-135m-instruct:Q2_K-imat",
        ]


def test_no_section_without_a_pair():
    assert "importance matrix" not in saved_eval().to_markdown()
