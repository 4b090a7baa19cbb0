"""Regenerate the README's generated tables (settings, clinical rules, order of value) in place.

    python tools/sync_readme.py

tests/test_settings.py, tests/test_rules_table.py and tests/test_card_policy.py
fail until this is run after a setting, a card or the order of value changes.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from a checkout without installing

from cds_service.cli import main, settings_table, value_order_table  # noqa: E402

README = ROOT / "README.md"


def _between(text: str, name: str, body: str) -> str:
    pattern = rf"<!-- {name}:start -->.*<!-- {name}:end -->"
    return re.sub(pattern, lambda m: f"<!-- {name}:start -->\n{body}\n<!-- {name}:end -->", text, flags=re.S)


def rules_table() -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["rules"])
    return out.getvalue().rstrip("\n")


if __name__ == "__main__":
    text = README.read_text()
    text = _between(text, "settings-table", settings_table())
    text = _between(text, "rules-table", rules_table())
    text = _between(text, "value-order", value_order_table())
    README.write_text(text)
    print(f"updated {README}")
