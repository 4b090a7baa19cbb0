"""`cds-service rules`: the card catalogue as the README's Markdown table."""

from pathlib import Path

from cds_service.card_render import card_ids
from cds_service.cli import main, rules_table
from cds_service.rules.catalogue import CATALOGUE

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_rules_table_matches_the_command():
    """The README table is exactly what `cds-service rules` prints."""
    text = README.read_text()
    table = text.split("<!-- rules-table:start -->\n", 1)[1].split("\n<!-- rules-table:end -->", 1)[0]
    assert table == rules_table(), "run `cds-service rules` and paste it into the README"


def test_every_card_is_a_row_with_catalogue_hooks_and_source(capsys):
    assert main(["rules"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| `C-")]
    assert [r.split("`")[1] for r in rows] == card_ids()
    for row in rows:
        card_id = row.split("`")[1]
        hooks, indicators = CATALOGUE[card_id]
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert cells[1] == ", ".join(hooks) and cells[2] == ", ".join(indicators)
        assert "](https://" in cells[4]


def test_settings_column_names_env_and_built_in_settings():
    rows = {r.split("`")[1]: r for r in rules_table().splitlines() if r.startswith("| `C-")}
    assert "`CDS_FRESH_FRACTURE_WEEKS` (12)" in rows["C-EXERCISE"]
    assert "`fall_prevention_min_age` = 65 (built-in)" in rows["C-FALLS"]
