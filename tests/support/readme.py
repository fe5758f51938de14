"""What the README's "JSON fields" section lists for each command."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def json_fields(command: str) -> list[str]:
    """The field names (the code spans that are one name) of the `- \\`COMMAND\\`:` bullet."""
    text = README.read_text(encoding="utf-8")
    section = text.split("### JSON fields", 1)[1].split("\n## ", 1)[0]
    bullet = re.search(rf"^- `{re.escape(command)}`: (.*?)(?=^- |\Z)", section, re.M | re.S)
    assert bullet, f"the README lists no JSON fields for {command}"
    return re.findall(r"`([a-z_0-9]+)`", bullet.group(1))
