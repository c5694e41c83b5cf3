"""The manual's annotated survey script (docs/scripts.md) is what newcomers copy: it must
stay valid."""

from __future__ import annotations

import re
from pathlib import Path

from conversations.script import parse_script

SCRIPTS = Path(__file__).resolve().parents[2] / "docs" / "scripts.md"


def test_the_annotated_example_script_validates() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", SCRIPTS.read_text(encoding="utf-8"), re.S)
    assert blocks, "docs/scripts.md shows no YAML script"
    script = parse_script(blocks[0], "docs/scripts.md")
    assert [step.type for step in script.steps] == [
        "csat", "choice", "text", "yes_no", "message", "message"]
    assert script.languages == ["ru", "en"]
