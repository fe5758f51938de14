"""ondevice.records: saved runs come back as the dataclasses that wrote them, or a clear error."""

from __future__ import annotations

import json

import pytest

from ondevice.errors import StoreError
from ondevice.measure.results import SCHEMA_VERSION, BenchRun, EvalRun
from ondevice.measure.runs import list_runs, load_run, save_run
from ondevice.records import RecordError, from_dict
from tests.support.runs import saved_bench, saved_eval


@pytest.mark.parametrize("make", [saved_bench, saved_eval], ids=["bench", "eval"])
def test_a_saved_run_loads_back_equal_and_typed(make, tmp_path):
    run = make()
    loaded = load_run(save_run(run, tmp_path))
    assert loaded == run and type(loaded) is type(run)
    assert json.loads((tmp_path / f"{run.id}.json").read_text())["schema"] == SCHEMA_VERSION


def test_fields_are_checked_and_the_error_names_the_field(tmp_path):
    data = saved_bench().as_dict()
    data["results"][0]["pp"]["mean"] = "fast"
    with pytest.raises(RecordError, match=r"results\[0\]\.pp\.mean: expected a number"):
        from_dict(BenchRun, data)
    data = saved_eval().as_dict()
    data["quality"][0]["surprise"] = 1
    with pytest.raises(RecordError, match="unknown keys"):
        from_dict(EvalRun, data)


def test_a_run_from_a_newer_version_is_refused_and_left_out_of_the_history(tmp_path):
    run = saved_bench()
    path = save_run(run, tmp_path)
    data = json.loads(path.read_text())
    data["schema"] = SCHEMA_VERSION + 1
    path.write_text(json.dumps(data))
    with pytest.raises(StoreError, match="newer ondevice"):
        load_run(path)
    assert list_runs(tmp_path) == []
