"""The README's annotated survey script is what newcomers copy: it must stay valid."""

from __future__ import annotations

import re
from pathlib import Path

from conversations.script import parse_script

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_annotated_example_script_validates() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert blocks, "README.md shows no YAML script"
    script = parse_script(blocks[0], "README.md")
    assert [step.type for step in script.steps] == [
        "csat", "choice", "text", "yes_no", "message", "message"]
    assert script.languages == ["ru", "en"]
