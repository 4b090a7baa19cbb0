"""Synthetic patient fixtures: load, shift to today, turn into prefetch.

A fixture is fhir_fixtures/patients/<scenario>.json, a FHIR R4 transaction
Bundle written with absolute dates around an anchor date. The anchor is a
Bundle meta.tag {system: ANCHOR_SYSTEM, code: "YYYY-MM-DD"}. Loading shifts
every full date/dateTime/instant string in the Bundle by (today - anchor)
days, so "a DXA 4 months ago" stays 4 months ago forever.

Expectations, also meta.tags: {system: EXPECT_SYSTEM, code: "<hook>:<card id>"}
must fire; {system: FORBID_SYSTEM, code: "<hook>:<card id>"} must not.
Draft orders for order hooks are MedicationRequest/ServiceRequest entries
with status "draft": they go to drafts_from_bundle(), never to the prefetch.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

from cds_service.card_render import data_dir

FIXTURE_SYSTEM = "https://github.com/osteoporosis-cds/fixtures"
ANCHOR_SYSTEM = FIXTURE_SYSTEM + "/anchor-date"
EXPECT_SYSTEM = FIXTURE_SYSTEM + "/expect-card"
FORBID_SYSTEM = FIXTURE_SYSTEM + "/forbid-card"
# "Care up to date" on a hook (code: the hook): everything due is done, so no
# info card may fire there (second-pass section 7: info cards only when
# something is to be done now).
UP_TO_DATE_SYSTEM = FIXTURE_SYSTEM + "/care-up-to-date"

# prefetch key (cds_service.services.prefetch_templates) -> resource type
PREFETCH_TYPES = {
    "observations": "Observation",
    "conditions": "Condition",
    "medicationRequests": "MedicationRequest",
    "medicationAdministrations": "MedicationAdministration",
    "medicationStatements": "MedicationStatement",
    "procedures": "Procedure",
    "serviceRequests": "ServiceRequest",  # placed orders only: drafts go to draftOrders
    "encounters": "Encounter",
}

_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})((?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)?)$")


def fixtures_dir() -> Path:
    return data_dir() / "fhir_fixtures"


def patient_names() -> list[str]:
    return sorted(p.stem for p in (fixtures_dir() / "patients").glob("*.json"))


def _tags(bundle: dict[str, Any], system: str) -> list[str]:
    return [t.get("code", "") for t in (bundle.get("meta") or {}).get("tag") or () if t.get("system") == system]


def anchor_date(bundle: dict[str, Any]) -> dt.date:
    codes = _tags(bundle, ANCHOR_SYSTEM)
    if len(codes) != 1:
        raise ValueError("fixture Bundle needs exactly one anchor-date meta.tag")
    return dt.date.fromisoformat(codes[0])


def shift_dates(value: Any, days: int) -> Any:
    """Copy of `value` with every full date/dateTime string moved by `days`.
    Partial dates ("1950", "1950-05") are left alone: write full dates."""
    if isinstance(value, dict):
        return {k: (v if k == "tag" else shift_dates(v, days)) for k, v in value.items()}
    if isinstance(value, list):
        return [shift_dates(v, days) for v in value]
    if isinstance(value, str):
        m = _DATE.match(value)
        if m:
            try:
                day = dt.date.fromisoformat(m.group(1))
            except ValueError:
                return value
            return (day + dt.timedelta(days=days)).isoformat() + m.group(2)
    return value


def load_patient(name: str, *, today: dt.date) -> dict[str, Any]:
    """The fixture Bundle with its dates shifted so its anchor falls on `today`."""
    bundle = json.loads((fixtures_dir() / "patients" / f"{name}.json").read_text(encoding="utf-8"))
    return shift_dates(bundle, (today - anchor_date(bundle)).days)


def _resources(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry") or () if isinstance(e, dict) and "resource" in e]


def _is_draft(res: dict[str, Any]) -> bool:
    return res.get("resourceType") in ("MedicationRequest", "ServiceRequest") and res.get("status") == "draft"


def prefetch_from_bundle(bundle: dict[str, Any]) -> dict[str, Any]:
    """Prefetch dict for the services' keys: "patient" -> Patient (or None),
    every other key -> a searchset Bundle of that resource type."""
    resources = [r for r in _resources(bundle) if not _is_draft(r)]
    out: dict[str, Any] = {"patient": next((r for r in resources if r.get("resourceType") == "Patient"), None)}
    # Fixture Observations all travel in "observations"; the SNOMED-coded
    # fracture-finding and safety-lab queries are answered empty so nothing is sent twice.
    for key in ("fractureFindings", "safetyLabs"):
        out[key] = {"resourceType": "Bundle", "type": "searchset", "total": 0, "entry": []}
    for key, rtype in PREFETCH_TYPES.items():
        matches = [r for r in resources if r.get("resourceType") == rtype]
        out[key] = {
            "resourceType": "Bundle", "type": "searchset", "total": len(matches),
            "entry": [{"fullUrl": f"urn:uuid:{r.get('id', i)}", "resource": r, "search": {"mode": "match"}}
                      for i, r in enumerate(matches)],
        }
    return out


def drafts_from_bundle(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in _resources(bundle) if _is_draft(r)]


def draft_orders_bundle(bundle: dict[str, Any]) -> dict[str, Any]:
    """context.draftOrders as a CDS client sends it (a collection Bundle)."""
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"resource": r} for r in drafts_from_bundle(bundle)]}


def expectations(bundle: dict[str, Any], hook: str) -> tuple[set[str], set[str]]:
    """(card ids that must fire, card ids that must not) on `hook`.

    A tag code is `hook:CARD-ID` or `hook:CARD-ID:indicator`."""
    def pick(system: str) -> set[str]:
        return {c.split(":")[1] for c in _tags(bundle, system) if c.startswith(hook + ":")}
    return pick(EXPECT_SYSTEM), pick(FORBID_SYSTEM)


def expected_indicators(bundle: dict[str, Any], hook: str) -> dict[str, str]:
    """card id -> indicator, for expect-card tags that name one."""
    out = {}
    for code in _tags(bundle, EXPECT_SYSTEM):
        parts = code.split(":")
        if parts[0] == hook and len(parts) == 3:
            out[parts[1]] = parts[2]
    return out


def care_up_to_date(bundle: dict[str, Any], hook: str) -> bool:
    """True when the fixture says its care is up to date on `hook` (no info card)."""
    return hook in _tags(bundle, UP_TO_DATE_SYSTEM)


CONTEXT_ONLY_SYSTEM = "https://github.com/osteoporosis-cds/fixtures/context-only"


def is_selected(resource: dict[str, Any]) -> bool:
    """order-select: a draft is in `selections` unless it carries a
    `context-only` meta.tag (then it is only context in draftOrders)."""
    tags = (resource.get("meta") or {}).get("tag") or []
    return not any(isinstance(t, dict) and t.get("system") == CONTEXT_ONLY_SYSTEM for t in tags)


# ---------------------------------------------------------------------------
# Real-world charts (fhir_fixtures/realworld/): whole charts nobody here wrote
# ---------------------------------------------------------------------------

def realworld_paths(corpus: str = "synthea") -> list[Path]:
    return sorted((fixtures_dir() / "realworld" / corpus).glob("*.json.gz"))


def _strings(value: Any):
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def load_realworld(path: Path, *, today: dt.date) -> list[dict[str, Any]]:
    """A real-world chart's resources, every full date shifted so the latest
    one is the day before `today` (the corpus README's rule)."""
    import gzip

    with gzip.open(path, "rt", encoding="utf-8") as fh:
        resources = _resources(json.load(fh))
    latest = max(dt.date.fromisoformat(s[:10]) for s in _strings(resources) if _DATE.match(s))
    return shift_dates(resources, ((today - dt.timedelta(days=1)) - latest).days)
