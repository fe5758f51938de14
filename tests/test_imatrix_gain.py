"""The issue's promise, measured: `quantize --imatrix auto` on the SmolLM2 F16 writes files whose
KL divergence from the F16 is lower than the plain files' at Q4_K_M and Q2_K, on a text the matrix
never saw (eval's pydoc topics; the matrix comes from the standard library's module docstrings)."""

from __future__ import annotations

import json

import pytest

from ondevice.calibration_text import default_dataset
from ondevice.converters.quantize_options import AUTO_CHUNKS
from ondevice.manifest import sha256_file
from ondevice.store import Store
from tests.support.cli import invoke
from tests.support.models import SMOL

pytestmark = pytest.mark.models

NAME = "smollm2-135m-instruct"


def _ok(*args: str) -> dict:
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_imatrix_auto_is_cached_recorded_and_lowers_kld(isolated_home):
    f16 = f"{NAME}:F16"
    _ok("convert", SMOL, "--outtype", "f16")
    _ok("quantize", f16, "--levels", "q4_k_m,q2_k")
    made = _ok("quantize", f16, "--levels", "q4_k_m,q2_k", "--imatrix", "auto")
    assert [o["quant"] for o in made["outputs"]] == ["Q4_K_M-imat", "Q2_K-imat"]

    store = Store()
    source = store.find(NAME, "F16")
    (cached,) = source.path.parent.glob("F16.*.imatrix")  # beside its source, keyed by what made it
    for quant in ("Q4_K_M-imat", "Q2_K-imat"):
        record = store.find(NAME, quant).manifest.imatrix
        assert record is not None and record.sha256 == sha256_file(cached)
        assert (record.datasets, record.chunk_count, record.chunk_size) == (
            [default_dataset()],
            AUTO_CHUNKS,
            512,
        )
    # The next `auto` for this source reads the cache instead of computing again.
    before = cached.stat().st_mtime_ns
    _ok("quantize", f16, "--levels", "q4_k_m", "--imatrix", "auto")
    assert cached.stat().st_mtime_ns == before and len(list(source.path.parent.glob("*.imatrix"))) == 1

    refs = [f"{NAME}:{q}" for q in ("Q4_K_M", "Q4_K_M-imat", "Q2_K", "Q2_K-imat")]
    run = _ok("eval", *refs, "--reference", f16, "--ctx", "256", "--chunks", "6", "--no-save")
    assert run["text_source"] == "pydoc_data.topics"
    kld = {q["model"]["quant"]: q["kld"]["value"] for q in run["quality"]}
    assert kld["Q4_K_M-imat"] < kld["Q4_K_M"], kld
    assert kld["Q2_K-imat"] < kld["Q2_K"], kld
