"""CDS Hooks request bodies built from fixture patients.

Used by `cds-service evaluate` (one Bundle, one hook) and by
`cds-service fixtures render-requests`, which writes the ready-to-curl files
in fhir_fixtures/requests/ with dates shifted to the day they are rendered.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

from cds_service import fixtures as fx

USER = "Practitioner/example"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"

# The order the C-TX-BP card suggests, as a clinician would draft it: used as
# the draft order in the order-select / order-sign examples when the fixture
# patient has none of its own.
EXAMPLE_DRAFT = {
    "resourceType": "MedicationRequest",
    "id": "draft-alendronate",
    "status": "draft",
    "intent": "order",
    "medicationCodeableConcept": {
        "coding": [{"system": RXNORM, "code": "904431", "display": "alendronic acid 70 MG Oral Tablet"}],
        "text": "alendronate 70 mg oral tablet",
    },
    "dosageInstruction": [{"text": "1 tablet (70 mg) by mouth once weekly."}],
}

# file name -> (fixture patient, hook, variant)
REQUESTS: dict[str, tuple[str, str, str]] = {
    "patient-view.json": ("tx-bp-postmenopausal-osteoporosis", "patient-view", ""),
    "order-select.json": ("tx-bp-postmenopausal-osteoporosis", "order-select", ""),
    "order-sign.json": ("tx-bp-postmenopausal-osteoporosis", "order-sign", ""),
    # The public sandbox's first Rx View call: fired before a drug is picked,
    # draftOrders without `type`, the draft MedicationRequest names no medication.
    "order-select-sandbox-no-medication.json": ("tx-bp-postmenopausal-osteoporosis", "order-select", "sandbox"),
}


def load_bundle(path_or_name: str, *, today: dt.date | None) -> tuple[dict[str, Any], dt.date | None]:
    """A Bundle from a file path or a fixture name, shifted so its anchor
    (if it has one) falls on `today`. Returns (bundle, anchor or None)."""
    path = Path(path_or_name)
    if not path.is_file():
        named = fx.fixtures_dir() / "patients" / f"{path_or_name}.json"
        if not named.is_file():
            raise ValueError(f"{path_or_name}: no such file, and no fixture of that name in {named.parent}")
        path = named
    try:
        bundle = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise ValueError(f"{path}: not a FHIR Bundle")
    try:
        anchor = fx.anchor_date(bundle)
    except ValueError:
        return bundle, None  # no anchor: dates are used as written
    if today is None:
        return bundle, anchor
    return fx.shift_dates(bundle, (today - anchor).days), anchor


def hook_request(bundle: dict[str, Any], hook: str, *, hook_instance: str,
                 drafts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The CDS Hooks request for `hook` with the Bundle as prefetch; for order
    hooks its draft orders (or `drafts`) as context.draftOrders, and for
    order-select every draft without the context-only tag as a selection."""
    prefetch = fx.prefetch_from_bundle(bundle)
    patient = prefetch.get("patient") or {}
    pid = patient.get("id") or "unknown"
    context: dict[str, Any] = {"userId": USER, "patientId": pid}
    if hook in ("order-select", "order-sign"):
        orders = fx.drafts_from_bundle(bundle) if drafts is None else drafts
        context["draftOrders"] = {"resourceType": "Bundle", "type": "collection",
                                  "entry": [{"resource": r} for r in orders]}
        if hook == "order-select":
            context["selections"] = [f"{r['resourceType']}/{r['id']}" for r in orders
                                     if fx.is_selected(r) and r.get("id")]
    return {"hookInstance": hook_instance, "hook": hook, "context": context, "prefetch": prefetch}


def _draft_for(patient_id: str, today: dt.date) -> dict[str, Any]:
    draft = copy.deepcopy(EXAMPLE_DRAFT)
    draft["subject"] = {"reference": f"Patient/{patient_id}"}
    draft["authoredOn"] = today.isoformat()
    return draft


def render_request(file_name: str, today: dt.date) -> dict[str, Any]:
    name, hook, variant = REQUESTS[file_name]
    bundle = fx.load_patient(name, today=today)
    pid = (fx.prefetch_from_bundle(bundle).get("patient") or {}).get("id", "unknown")
    # a fixed hookInstance per file keeps regenerated files diff-friendly (only dates move)
    instance = "00000000-0000-4000-8000-" + f"{sum(map(ord, file_name)):012d}"
    if hook == "patient-view":
        return hook_request(bundle, hook, hook_instance=instance)
    drafts = fx.drafts_from_bundle(bundle) or [_draft_for(pid, today)]
    body = hook_request(bundle, hook, hook_instance=instance, drafts=drafts)
    if variant == "sandbox":
        bare = {"resourceType": "MedicationRequest", "id": "request-123", "status": "draft", "intent": "order",
                "subject": {"reference": f"Patient/{pid}"}}
        body["context"]["draftOrders"] = {"resourceType": "Bundle", "entry": [{"resource": bare}]}
        body["context"]["selections"] = ["MedicationRequest/request-123"]
    return body


def render_requests(out_dir: Path, today: dt.date) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name in REQUESTS:
        path = out_dir / file_name
        path.write_text(json.dumps(render_request(file_name, today), indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written
