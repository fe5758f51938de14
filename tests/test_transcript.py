"""ondevice.transcript: what a saved chat records."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime

from ondevice.runtime.protocol import GenerationParams
from ondevice.transcript import Transcript, Turn


def test_json_has_a_zoned_timestamp_and_the_sampling_settings(tmp_path):
    params = GenerationParams(max_tokens=64, temperature=0.7, seed=42)
    transcript = Transcript(models=["m"], sampling=asdict(params), turns=[Turn("user", "Hi")])
    data = json.loads(transcript.save(tmp_path / "chat.json").read_text())
    assert datetime.fromisoformat(data["started"]).utcoffset() is not None
    assert data["sampling"]["temperature"] == 0.7 and data["sampling"]["seed"] == 42
    assert data["sampling"]["max_tokens"] == 64 and data["sampling"]["top_k"] == 40
    assert "temperature 0.7" in transcript.to_markdown()
