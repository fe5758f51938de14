"""ondevice.tui.bench_rows and bench_measurer: what the bench screen's table shows of saved runs, and
the settings it measures with (no Textual needed)."""

from __future__ import annotations

from ondevice.measure.results import FollowResult, TypeScore
from ondevice.prompting import PromptMode
from ondevice.tui.bench_measurer import eval_metrics
from ondevice.tui.bench_rows import Shown, table_cells
from tests.support.runs import LADDER, saved_bench, saved_eval


def test_the_table_keeps_speed_and_quality_of_the_same_models_only():
    bench, quality = saved_bench(), saved_eval()
    both = Shown().with_run(bench).with_run(quality)
    assert both.ids == [bench.id, quality.id] and len(both.rows()) == 4
    other = saved_bench()
    other.results = other.results[:0]
    other.id = "bench-other"
    alone = both.with_run(other)  # about none of the eval's models: the eval goes
    assert alone.ids == ["bench-other"] and alone.rows() == []
    assert eval_metrics("", True) == ("ppl", "kld", "top1") and eval_metrics("", False) == ("ppl",)
    assert eval_metrics("ppl, follow", False) == ("ppl", "follow")


def test_follow_scores_get_a_column_next_to_quality_or_alone():
    run = saved_eval()
    scores = {"length:max_words": TypeScore(1, 1, 2)}
    run.follow = [
        FollowResult(LADDER[1], PromptMode.CHAT_TEMPLATE, 0.25, 0.5, 0.3, 0.6, scores, ()),
        FollowResult(LADDER[0], PromptMode.CHAT_TEMPLATE, 0.75, 1.0, 0.8, 1.0, scores, ()),
    ]
    rows = {r.name: r for r in Shown().with_run(run).rows()}
    assert table_cells(rows[LADDER[1].name])["follow"] == "25.0 / 50.0 %"
    assert "KLD" in table_cells(rows[LADDER[1].name])  # the same row keeps its quality figures
    assert table_cells(rows[LADDER[0].name])["follow"] == "75.0 / 100.0 %"
    # An eval of instruction following alone still fills the table.
    alone = saved_eval()
    alone.quality, alone.reference, alone.reference_ppl = [], None, None
    alone.follow = run.follow[:1]
    (row,) = Shown().with_run(alone).rows()
    assert table_cells(row)["follow"] == "25.0 / 50.0 %" and "KLD" not in table_cells(row)


def test_a_reference_name_is_cut_in_the_middle_so_its_level_stays_in_view():
    from ondevice.tui.bench_rows import short_label

    assert short_label("gemma-3-270m:Q4_K_M") == "gemma-3-270m:Q4_K_M"
    cut = short_label("smollm2-135m-instruct-long-name:Q4_K_M", width=22)
    assert len(cut) == 22 and cut.endswith(":Q4_K_M") and "…" in cut


def test_any_model_of_the_store_can_be_the_reference_not_only_a_column():
    from ondevice.kinds import Kind
    from ondevice.live import ModelSpec
    from ondevice.tui.bench_rows import reference_options
    from ondevice.tui.picker import Choice

    column = ModelSpec("bundled:gemma-3-270m", "gemma-3-270m:Q4_K_M", Kind.BASE, "Q4_K_M", 1, lambda: None)
    choices = [
        Choice("gemma-3-270m:Q4_K_M", "base", aliases=("bundled:gemma-3-270m",)),  # the column itself
        Choice("smollm2-135m-instruct:F16", "instruct"),
    ]
    values = [value for _, value in reference_options([column], choices)]
    assert values == ["bundled:gemma-3-270m", "smollm2-135m-instruct:F16"]


def test_table_cells_stay_narrow_a_long_name_cut_in_the_middle():
    rows = Shown(saved_bench()).with_run(saved_eval()).rows()
    cells = [table_cells(row) for row in rows]
    assert [c["model"] for c in cells] == ["smollm…truct (ref)"] + ["smollm2-1…instruct"] * 3
    assert all(len(c["model"]) <= 18 for c in cells)
    assert cells[1]["KLD"] == "0.0011±0.0000" and cells[1]["tg t/s"] == "48.9±1.2"


def test_a_file_made_with_an_importance_matrix_has_its_own_row_and_point_beside_the_plain_one():
    from dataclasses import replace

    from ondevice.measure.stats import Estimate
    from ondevice.tui.bench_rows import kld_points, point_labels
    from tests.support.runs import record

    run = saved_eval()
    plain = next(q for q in run.quality if q.model.quant == "Q4_K_M")
    imat = record("smollm2-135m-instruct:Q4_K_M-imat", "Q4_K_M-imat", 105.4, 6.17)
    run.quality.append(replace(plain, model=imat, kld=Estimate(plain.kld.value / 2, 0.001)))
    rows = Shown().with_run(run).rows()
    quants = [r.quant for r in rows]
    at = quants.index("Q4_K_M")
    assert quants[at + 1] == "Q4_K_M-imat"  # side by side: nearly the same size
    assert [table_cells(r)["quant"] for r in rows[at : at + 2]] == ["Q4_K_M", "Q4_K_M-imat"]
    names = {table_cells(r)["model"] for r in rows[at : at + 2]}
    assert len(names) == 1 and "imat" not in names.pop()  # one model; the level column tells them apart
    assert point_labels(rows)[at : at + 2] == ["Q4_K_M", "Q4_K_M-imat"]
    points = {label: kld for label, _, kld in kld_points(rows)}
    assert points["Q4_K_M-imat"] == plain.kld.value / 2 and points["Q4_K_M"] == plain.kld.value
