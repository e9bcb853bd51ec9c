"""The README's Python snippets run as written (in a scratch copy of the examples)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SNIPPETS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_readme_has_the_two_api_snippets() -> None:
    assert len(SNIPPETS) >= 2
    assert any("run_campaign" in s for s in SNIPPETS)
    assert any("Sender(" in s for s in SNIPPETS)


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippet_runs(index: int, tmp_path: Path) -> None:
    shutil.copytree(
        ROOT / "examples",
        tmp_path / "examples",
        ignore=shutil.ignore_patterns("outbox", "*.sqlite*", "*.results.jsonl"),
    )
    script = tmp_path / "snippet.py"
    script.write_text(SNIPPETS[index])
    out = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    if "run_campaign" in SNIPPETS[index]:
        assert "'sent': 100" in out.stdout
    else:
        assert out.stdout.startswith("sent ")
