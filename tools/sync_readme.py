"""Regenerate the README's generated tables (settings, clinical rules, order of value) in place,
the prefetch templates of the OpenAPI discovery example and the Helm chart's values.schema.json
(the settings it accepts).

    python tools/sync_readme.py

tests/test_settings.py, tests/test_rules_table.py, tests/test_card_policy.py and
tests/test_openapi.py fail until this is run after a setting, a card, the order
of value or a shipped value set changes; .ci/check_helm.py fails until it is run
after a setting is added, renamed or removed.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from a checkout without installing

from cds_service.cli import chart_values_schema, main, settings_table, value_order_table  # noqa: E402

README = ROOT / "README.md"
OPENAPI = ROOT / "openapi" / "openapi.yaml"
CHART_SCHEMA = ROOT / "helm" / "osteoporosis-cds" / "values.schema.json"


def chart_schema_text() -> str:
    text = json.dumps(chart_values_schema(), indent=2)
    # One line per setting: {"type": ["string", "number", "boolean"]}.
    text = re.sub(r'\{\s+"type": \[\s+([^\]]*?)\s+\]\s+\}',
                  lambda m: '{"type": [' + re.sub(r",\s+", ", ", m.group(1)) + "]}", text)
    return text + "\n"


def _between(text: str, name: str, body: str) -> str:
    pattern = rf"<!-- {name}:start -->.*<!-- {name}:end -->"
    return re.sub(pattern, lambda m: f"<!-- {name}:start -->\n{body}\n<!-- {name}:end -->", text, flags=re.S)


def rules_table() -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["rules"])
    return out.getvalue().rstrip("\n")


def openapi_prefetch(text: str) -> str:
    """The discovery example's templates (one YAML anchor, `&prefetchTemplates`) as the
    shipped value sets generate them."""
    from cds_service.services.prefetch_templates import PREFETCH

    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if line.rstrip().endswith("prefetch: &prefetchTemplates"))
    indent = " " * (len(lines[start]) - len(lines[start].lstrip()) + 2)
    end = start + 1
    while end < len(lines) and lines[end].startswith(indent):
        end += 1
    return "\n".join(lines[:start + 1] + [f"{indent}{key}: {value}" for key, value in PREFETCH.items()]
                     + lines[end:])


if __name__ == "__main__":
    text = README.read_text()
    text = _between(text, "settings-table", settings_table())
    text = _between(text, "rules-table", rules_table())
    text = _between(text, "value-order", value_order_table())
    README.write_text(text)
    OPENAPI.write_text(openapi_prefetch(OPENAPI.read_text()))
    CHART_SCHEMA.write_text(chart_schema_text())
    print(f"updated {README}, {OPENAPI} and {CHART_SCHEMA}")
