"""ondevice.records: saved runs come back as the dataclasses that wrote them, or a clear error."""

from __future__ import annotations

import json

import pytest

from ondevice.errors import StoreError
from ondevice.measure.results import SCHEMA_VERSION, BenchRun, EvalRun
from ondevice.measure.runs import list_runs, load_run, load_runs, save_run
from ondevice.records import RecordError, from_dict
from tests.support.readme import json_fields
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


def keys(value: object) -> set[str]:
    """Every key of a JSON value, at any depth."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys(v)}
    return set()


def test_a_schema_1_run_loads_in_todays_names(tmp_path):
    """Schema 1 called the time to first token `time_to_first_token`; `run --json` says `_seconds`."""
    for run, results in ((saved_bench(), "results"), (saved_eval(), "speed")):
        if run.kind == "eval":
            run.speed = saved_bench().results[:1]
        path = save_run(run, tmp_path)
        data = json.loads(path.read_text())
        assert data["schema"] == SCHEMA_VERSION == 2
        assert "time_to_first_token_seconds" in data[results][0] and "time_to_first_token" not in keys(data)
        for result in data[results]:
            result["time_to_first_token"] = result.pop("time_to_first_token_seconds")
        path.write_text(json.dumps(data | {"schema": 1}))
        loaded = load_run(path)
        assert loaded == run and loaded.schema == SCHEMA_VERSION
        assert [p.name for p, _ in load_runs(tmp_path)].count(path.name) == 1


@pytest.mark.parametrize("make", [saved_bench, saved_eval], ids=["bench", "eval"])
def test_the_readme_lists_the_fields_a_saved_run_has(make):
    run = make()
    data = run.as_dict()
    listed = json_fields(run.kind)
    assert set(data) <= set(listed), set(data) - set(listed)  # every top-level field is listed
    csv_columns = set(run.rows()[0]) if run.rows() else set()
    assert set(listed) <= keys(data) | csv_columns, set(listed) - keys(data) - csv_columns
