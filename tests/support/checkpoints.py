"""Real Hugging Face checkpoints rebuilt from the bundled GGUFs, cached between test runs.

transformers dequantizes a GGUF into a PyTorch model; saving that (after dropping the quantizer)
gives a safetensors checkpoint with config.json and tokenizer files, as the Hub would serve it.
Building takes tens of seconds on two cores, so each result is kept under
~/.cache/ondevice-tests/checkpoints/ keyed by the source GGUF's sha256 (built in a temp dir, renamed).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sys
import tempfile
from pathlib import Path

CACHE_ENV = "ONDEVICE_TEST_CACHE"


def cache_root() -> Path:
    default = Path.home() / ".cache" / "ondevice-tests"
    return Path(os.environ.get(CACHE_ENV, default)) / "checkpoints"


def rebuild(gguf_path: Path, sha256: str, label: str) -> Path:
    """The checkpoint directory for `gguf_path`, built once per sha256."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{label}-{sha256[:16]}"
    if (final / "config.json").is_file():
        return final
    with open(root / f".{label}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second test run waits for the first build
        if (final / "config.json").is_file():
            return final
        work = Path(tempfile.mkdtemp(prefix=f".{label}-", dir=root))
        try:
            _build(gguf_path, work)
            os.replace(work, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(work)
    return final


def _build(gguf_path: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf_path.name}
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), **kwargs)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out, safe_serialization=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), **kwargs)
    tokenizer.save_pretrained(out)


if __name__ == "__main__":  # python tests/support/checkpoints.py FILE.gguf SHA256 LABEL
    print(rebuild(Path(sys.argv[1]), sys.argv[2], sys.argv[3]))
