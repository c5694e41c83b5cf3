"""The example surveys and campaign that ship with Otklik: `otklik run` starts on them when
there is nothing else (no SURVEYS_DIR, no surveys/ folder, no script in the database), and
`otklik init` copies them out to be edited."""

from pathlib import Path

EXAMPLES = Path(__file__).parent
