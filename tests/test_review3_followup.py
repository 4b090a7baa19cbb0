"""Third clinical review (follow-up): ServiceRequests that are no order, healing-phase
fracture codes before hands-on treatment, and a secondary-cause panel that leaves out
what is on record. Each pinned on its review3-* fixture through the real HTTP endpoint,
beyond the expect/forbid tags that test_fixture_scenarios checks."""

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
    app = create_app({"CDS_DATABASE_URL": f"sqlite:///{tmp_path_factory.mktemp('review3')}/cds.db",
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


# --- 1. A ServiceRequest is care arranged only as an order in force ------------------

@pytest.mark.parametrize("name", ["review3-care-pt-referral-proposal", "review3-care-pt-referral-plan",
                                  "review3-care-pt-referral-option", "review3-care-pt-referral-on-hold",
                                  "review3-care-pt-referral-status-unknown", "review3-care-pt-referral-no-intent"])
def test_a_referral_that_is_no_order_in_force_is_not_care_done(client, name):
    """FHIR R4 request-intent: a proposal, plan or option only suggests care; request-status
    on-hold withdraws the authorisation for now, unknown may be any status. None of them is a
    PT referral done: the exercise card fires and does not list it as care on record."""
    card = cards(client, name)["C-EXERCISE"]
    assert "Physical therapy ordered" not in card["detail"]
    assert "Prescribe" in card["detail"]


@pytest.mark.parametrize("name", ["review3-care-near-miss-pt-referral-original-order-completed",
                                  "review3-care-near-miss-pt-referral-directive",
                                  "c-exercise-near-miss-pt-referral-11-months"])
def test_an_order_or_directive_is_care_done(client, name):
    assert "C-EXERCISE" not in cards(client, name)


def test_a_dxa_proposal_is_not_a_dxa_ordered(client):
    """Monitoring reads a DXA already ordered from the same care list: a proposal is none."""
    due = cards(client, "review3-care-dxa-order-proposal")["C-MON-DXA-DUE"]
    assert "already ordered" not in due["detail"].lower()
    assert "C-MON-DXA-DUE" not in cards(client, "c-mon-dxa-due-near-miss-dxa-ordered")
