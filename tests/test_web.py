"""The Prompt Editor's pure JavaScript logic (web/editor_core.js), tested with Node's own
test runner (`node --test web/tests/`), so that `python -m pytest` covers it too."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parents[1] / "web"


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node >= 18 (node --test) for web/tests/")
def test_editor_core_javascript():
    run = subprocess.run(["node", "--test", "tests/"], cwd=WEB, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "# fail 0" in run.stdout and "# pass 0" not in run.stdout, run.stdout[-2000:]
