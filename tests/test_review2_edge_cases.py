"""Second clinical review (after issues 12 and 14): what real EHRs send that the
rules misread, each pinned on its review2-* fixture and checked through the real
HTTP endpoint on the card's content, beyond the expect/forbid tags that
test_fixture_scenarios checks."""

from __future__ import annotations

import datetime as dt

import pytest

from cds_service import fixtures as fx
from cds_service.app import create_app
from tests.conftest import TEST_SECRET
from tests.test_fixture_scenarios import SERVICE_IDS, hook_body

TODAY = dt.date.today()


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    app = create_app({"CDS_DATABASE_URL": f"sqlite:///{tmp_path_factory.mktemp('review2')}/cds.db",
                      "CDS_AUTH_REQUIRED": "false", "CDS_PATIENT_HASH_SECRET": TEST_SECRET,
                      "CDS_ALLOWED_FHIR_SERVERS": "https://fhir.example.org/r4", "CDS_INFO_CARD_BUDGET": "1000",
                      "CDS_ROUTINE_CARD_BUDGET": "1000"})
    app.testing = True
    return app.test_client()


def cards(client, name, hook="patient-view"):
    bundle = fx.load_patient(name, today=TODAY)
    resp = client.post(f"/cds-services/{SERVICE_IDS[hook]}", json=hook_body(bundle, hook))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return {c["source"]["topic"]["code"]: c for c in resp.get_json()["cards"]}


def created_drugs(card):
    return [c["display"] for s in card.get("suggestions", ()) for a in s["actions"] if a["type"] == "create"
            for c in (a["resource"].get("medicationCodeableConcept") or {}).get("coding", ())]


def test_race_specific_egfr_pair_reads_the_lower_value(client):
    """MDRD reports of one draw carried eGFR "among non-blacks" 32 and "among blacks" 39: the
    rules read whichever the server listed last, and offered alendronate (limit 35) at 32."""
    card = cards(client, "review2-egfr-race-pair-32-and-39-alendronate-draft")["C-TX-BP"]
    assert "eGFR 32 " in card["detail"] and "eGFR 39" not in card["detail"]
    assert all("alendron" not in d for d in created_drugs(card))
    assert any("risedronate" in d for d in created_drugs(card))


def test_fractionated_vitamin_d_reads_the_total(client):
    """A fractionated 25-OH vitamin D (LC-MS/MS) reports the total with its D2 and D3 fractions
    on one draw: the D2 fraction (2 ng/mL) listed last read as a severe deficiency, with a
    50,000 IU repletion order."""
    shown = cards(client, "review2-vitd-fractionated-total-36-d2-fraction-2")
    assert "C-VITD-LOW" not in shown
    low = cards(client, "review2-vitd-fractionated-near-miss-total-15")["C-VITD-LOW"]
    assert "25-OH vitamin D 15 ng/mL" in low["detail"]
