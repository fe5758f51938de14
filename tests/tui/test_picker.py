"""The F4 model picker, with the references `ondevice compare` is started with."""

from __future__ import annotations

import shutil
from dataclasses import replace

from textual.widgets import SelectionList

from ondevice.cli.tui_launch import model_choices
from ondevice.kinds import Kind
from ondevice.manifest import describe, sha256_file
from ondevice.runtime.protocol import GenerationParams
from ondevice.store import Store
from ondevice.tui.app import OndeviceApp
from ondevice.tui.picker import PickerScreen
from tests.support.fake_backend import FakeBackend, fake_spec
from tests.support.gguf_samples import write_tiny_gguf

SIZE = (120, 36)


def pull_as_bundled(tmp_path, name: str) -> None:
    """Put a tiny GGUF into the store as `bundled:NAME` is pulled: its source says where it came from."""
    sample = write_tiny_gguf(tmp_path / f"{name}.gguf")
    Store().add(
        name,
        "Q4_K_M",
        lambda partial: shutil.copyfile(sample, partial),
        sample.stat().st_size,
        lambda summary: describe(
            summary, name=name, quant="Q4_K_M", source=f"bundled:{name}", sha256=sha256_file(sample)
        ),
    )


async def test_the_picker_ticks_models_started_as_bundled_refs_and_keeps_them(isolated_home, tmp_path):
    pull_as_bundled(tmp_path, "gemma-3-270m")  # pulled when compare started; smollm2 is not in the store
    base, instruct = FakeBackend(chat_template=None), FakeBackend()
    specs = [
        replace(fake_spec("gemma-3-270m", Kind.BASE, base), ref="bundled:gemma-3-270m"),
        replace(fake_spec("smollm2", Kind.INSTRUCT, instruct), ref="bundled:smollm2-135m-instruct"),
    ]
    opened: list[str] = []
    app = OndeviceApp(
        specs,
        defaults=GenerationParams(temperature=0),
        choices=model_choices,
        open_spec=lambda ref: opened.append(ref) or fake_spec(ref),
    )
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press("f4")
        picker = app.screen
        assert isinstance(picker, PickerScreen)
        selection = picker.query_one(SelectionList)
        assert sorted(selection.selected) == ["bundled:smollm2-135m-instruct", "gemma-3-270m:Q4_K_M"]
        await pilot.press("enter")  # nothing changed: nothing to reload, no complaint
        await app.workers.wait_for_complete()
        await pilot.pause(0.05)
        assert not isinstance(app.screen, PickerScreen)
        assert not any("pick between" in n.message for n in app._notifications)
        assert opened == [] and not base.closed and not instruct.closed
        assert [c.spec.ref for c in app.compare.columns] == [s.ref for s in specs]

        await pilot.press("f4")  # dropping one keeps the other's worker
        app.screen.query_one(SelectionList).deselect("bundled:smollm2-135m-instruct")
        await pilot.press("enter")
        for _ in range(3):
            await app.workers.wait_for_complete()
            await pilot.pause(0.05)
        assert [c.spec.ref for c in app.compare.columns] == ["bundled:gemma-3-270m"]
        assert instruct.closed and not base.closed and opened == []
