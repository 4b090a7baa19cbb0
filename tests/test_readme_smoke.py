"""The README's "Production smoke test" block, run as written (only the port
changes, so parallel runs cannot collide): the production server with a test
client's key, a signed patient-view call and signed feedback."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_server import _free_port

ROOT = Path(__file__).resolve().parents[1]


def smoke_block() -> str:
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- smoke-test:start -->\n", 1)[1].split("<!-- smoke-test:end -->", 1)[0]
    return re.search(r"```sh\n(.*?)```", block, re.S).group(1)


@pytest.mark.skipif(shutil.which("curl") is None, reason="the README block uses curl")
def test_readme_production_smoke_test_runs_as_written(tmp_path):
    port = _free_port()
    script = smoke_block().replace("PORT=8080", f"PORT={port}", 1)
    bin_dir = str(Path(sys.executable).parent)  # cds-service sits beside this interpreter
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDS_", "PROMETHEUS_"))}
    env.update(PATH=bin_dir + os.pathsep + env["PATH"], TMPDIR=str(tmp_path), PYTHONPATH=str(ROOT))
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    # What the README says the block prints, read from the README: a change
    # to the cards this request gets fails here until the README says so too.
    promised = documented_output()
    assert lines[0] == promised["cards"], result.stdout
    assert json.loads(lines[-1]) == json.loads(promised["feedback"])
    assert "Traceback" not in result.stderr
    (log,) = tmp_path.glob("tmp*/server.log")
    warnings = [line for line in log.read_text().splitlines() if '"configuration_warning"' in line]
    assert len(warnings) == promised["warnings"], warnings


def documented_output() -> dict:
    """The sentences after the block: its output and the server log's warnings."""
    text = " ".join((ROOT / "README.md").read_text().split("<!-- smoke-test:end -->", 1)[1][:1500].split())
    cards = re.search(r"It prints the cards' rule ids \(`(cards:[^`]*)`", text)
    feedback = re.search(r"the feedback reply `(\{[^`]*\})`", text)
    warnings = re.search(r"`\$SMOKE/server.log` holds the server's JSON log lines and (no|one|two|three) "
                         r"configuration warnings?", text)
    assert cards and feedback and warnings, "the README's sentences after the smoke-test block changed"
    return {"cards": cards.group(1), "feedback": feedback.group(1),
            "warnings": ("no", "one", "two", "three").index(warnings.group(1))}
