"""`cds-service discovery` and `cds-service evaluate` read the site's value sets
(CDS_EXTRA_VALUESETS_DIR) as the server does, through the one start-up function
(config.configure_terminology), and refuse a bad folder with serve's own line.
Each case runs the real command in a subprocess (the value sets are process-wide)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from urllib.parse import unquote

import pytest

from test_cli_config_errors import _unused_port, assert_one_line, run_cli
from test_prefetch_templates import LOCAL, _local_calcium_chart, _site_folder


def _observation_tokens(discovery: dict) -> dict[str, list[str]]:
    out = {}
    for service in discovery["services"]:
        query = service["prefetch"]["observations"].split("?", 1)[1]
        codes = next(part for part in query.split("&") if part.startswith("code="))[len("code="):]
        out[service["id"]] = [unquote(token) for token in codes.split(",")]
    return out


@pytest.mark.parametrize("with_site_codes", [True, False])
def test_discovery_command_asks_for_the_site_codes(tmp_path, with_site_codes):
    env = {"CDS_EXTRA_VALUESETS_DIR": str(_site_folder(tmp_path))} if with_site_codes else {}
    result = run_cli(["discovery"], env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    tokens = _observation_tokens(json.loads(result.stdout))
    local = f"{LOCAL}|CA SER&1"
    assert len(tokens) == 3
    assert all((local in t) == with_site_codes for t in tokens.values())


@pytest.mark.parametrize("with_site_codes", [True, False])
def test_evaluate_command_reads_the_site_codes(tmp_path, with_site_codes):
    """The C-SAFE-HYPOCA chart with its calcium coded only by the site's local code:
    low calcium (a card) only when the command reads the site's value sets."""
    bundle = _local_calcium_chart()  # dated for today: the anchor tag goes, so it is read as written
    bundle["meta"]["tag"] = [t for t in bundle["meta"]["tag"] if not t["system"].endswith("/anchor-date")]
    chart = tmp_path / "local-calcium.json"
    chart.write_text(json.dumps(bundle), encoding="utf-8")
    env = {"CDS_EXTRA_VALUESETS_DIR": str(_site_folder(tmp_path))} if with_site_codes else {}
    result = run_cli(["evaluate", str(chart), "--hook", "order-select", "--today", dt.date.today().isoformat(),
                      "--json", "--all"], env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    cards = {c["source"]["topic"]["code"] for c in json.loads(result.stdout)["cards"]}
    assert ("C-SAFE-HYPOCA" in cards) == with_site_codes


def _bad_file_folder(tmp_path: Path) -> str:
    folder = tmp_path / "bad-valuesets"
    folder.mkdir()
    (folder / "broken.json").write_text("{not json", encoding="utf-8")
    return str(folder)


BAD_FOLDERS = {
    "missing folder": (lambda tmp_path: str(tmp_path / "no-such-folder"), "not a folder"),
    "a file that is not JSON": (_bad_file_folder, "broken.json: not valid JSON"),
}


@pytest.mark.parametrize("command", [["discovery"], ["evaluate", "c-falls-fall-history-age-55"]],
                         ids=["discovery", "evaluate"])
@pytest.mark.parametrize("case", sorted(BAD_FOLDERS))
def test_card_commands_refuse_a_bad_value_set_folder_with_serves_line(tmp_path, command, case):
    make_folder, reason = BAD_FOLDERS[case]
    env = {"CDS_EXTRA_VALUESETS_DIR": make_folder(tmp_path)}
    served = run_cli(["serve", "--port", str(_unused_port())], env, cwd=tmp_path)
    serve_line = assert_one_line(served, "cds-service serve: configuration error: CDS_EXTRA_VALUESETS_DIR=", reason)
    result = run_cli(command, env, cwd=tmp_path)
    line = assert_one_line(result, f"cds-service {command[0]}: configuration error: ")
    assert result.stdout == ""
    assert line.replace(f"cds-service {command[0]}:", "cds-service serve:") == serve_line
