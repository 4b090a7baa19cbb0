"""Clinical review (issue 11 follow-up): the cards of one chart open must not
contradict each other. Every one-click osteoporosis-drug order a card suggests,
signed on its own, must not meet a critical safety card (pregnancy, low calcium,
zoledronic acid in kidney failure, romosozumab after an MI): a card that offers
an order another card forbids trains clinicians to click through critical cards
(BATES03; second-pass 2). C-SAFE-DMAB-CKD is the exception the contract makes:
the PROLIA24 plan rides with the next denosumab dose of a course under way
(second-pass 2), and that card's own "keep the order and add the plan" accepts it.

Runs every fixture patient (the review-* edge cases included) through the real
HTTP endpoints."""

from __future__ import annotations

import copy
import datetime as dt

import pytest

from cds_service import fixtures as fx
from cds_service.app import create_app
from cds_service.fhir import terminology as t
from tests.conftest import TEST_SECRET
from tests.test_fixture_scenarios import SERVICE_IDS, hook_body

TODAY = dt.date.today()
EXEMPT = {"C-SAFE-DMAB-CKD"}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """One app for the module (hundreds of fixture calls; no feedback is written, nothing
    persists between them that a call could see)."""
    app = create_app({"CDS_DATABASE_URL": f"sqlite:///{tmp_path_factory.mktemp('review')}/cds.db",
                      "CDS_AUTH_REQUIRED": "false", "CDS_PATIENT_HASH_SECRET": TEST_SECRET,
                      "CDS_ALLOWED_FHIR_SERVERS": "https://fhir.example.org/r4", "CDS_INFO_CARD_BUDGET": "1000"})
    app.testing = True
    return app.test_client()


def _drug_orders(card):
    """(suggestion label, MedicationRequest) for each osteoporosis-drug order the card offers."""
    for s in card.get("suggestions", ()):
        for a in s["actions"]:
            res = a.get("resource") or {}
            if a["type"] == "create" and res.get("resourceType") == "MedicationRequest":
                match = t.classify_medication(res.get("medicationCodeableConcept"))
                if any(t.AGENTS[x].drug_class in t.OSTEOPOROSIS_DRUG_CLASSES for x in match.agents):
                    yield s["label"], res


def _sign_alone(client, bundle, order):
    """order-sign with `order` as the only draft (the patient's own drafts left out)."""
    body = hook_body(bundle, "order-sign")
    draft = copy.deepcopy(order)
    draft.update(id="suggested-order", status="draft")
    body["context"]["draftOrders"] = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": draft}]}
    resp = client.post(f"/cds-services/{SERVICE_IDS['order-sign']}", json=body)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()["cards"]


@pytest.mark.parametrize("name", fx.patient_names())
def test_no_card_offers_an_order_a_critical_card_forbids(client, name):
    bundle = fx.load_patient(name, today=TODAY)
    hooks = ["patient-view"] + [h for h in ("order-select", "order-sign") if any(fx.expectations(bundle, h))]
    for hook in hooks:
        resp = client.post(f"/cds-services/{SERVICE_IDS[hook]}", json=hook_body(bundle, hook))
        for card in resp.get_json()["cards"]:
            offering = card["source"]["topic"]["code"]
            for label, order in _drug_orders(card):
                blocking = [c["source"]["topic"]["code"] for c in _sign_alone(client, bundle, order)
                            if c["indicator"] == "critical" and c["source"]["topic"]["code"] not in EXEMPT]
                assert not blocking, f"{name} {hook}: {offering} offers '{label}', which meets {blocking} at signing"


# --- Defects found in the review, each pinned on its edge-case fixture ------------

def _cards(client, name, hook="patient-view"):
    bundle = fx.load_patient(name, today=TODAY)
    resp = client.post(f"/cds-services/{SERVICE_IDS[hook]}", json=hook_body(bundle, hook))
    assert resp.status_code == 200
    return {c["source"]["topic"]["code"]: c for c in resp.get_json()["cards"]}


def _created(card):
    return [a["resource"] for s in card.get("suggestions", ()) for a in s["actions"] if a["type"] == "create"]


def _rxnorm(resource):
    return {c.get("code") for c in (resource.get("medicationCodeableConcept") or {}).get("coding", ())}


@pytest.mark.parametrize("name", ["review-dialysis-vitd-12", "review-hypercalcemia-vitd-15"])
def test_no_one_click_vitamin_d_repletion_on_dialysis_or_with_high_calcium(client, name):
    """Second-pass 1: dialysis or CKD 4-5 gets no generic cholecalciferol order (nephrology
    chooses the vitamin D, often activated; C-SUPP-CAVD already says so). Hypercalcemia:
    find its cause before high-dose vitamin D (ergocalciferol / cholecalciferol labels:
    contraindicated in hypercalcemia). The warning still fires."""
    card = _cards(client, name)["C-VITD-LOW"]
    assert card["indicator"] == "warning"
    assert not [r for r in _created(card) if r["resourceType"] == "MedicationRequest"]


def test_overdue_denosumab_offers_no_zoledronic_acid_without_kidney_function(client):
    """Reclast: creatinine clearance before each dose, contraindicated below 35. As on
    C-TX-DMAB-ALT, zoledronic acid is offered only on a known kidney function."""
    card = _cards(client, "review-dmab-overdue-kidney-unknown")["C-DMAB-OVERDUE"]
    codes = set().union(*(_rxnorm(r) for r in _created(card)))
    assert "705824" not in codes
    assert "993452" in codes  # the overdue denosumab dose is still offered


def test_follow_on_denosumab_start_on_dialysis_is_the_work_up_not_a_dose(client):
    """Starting denosumab on dialysis (PROLIA24): CKD-MBD work-up and nephrology first,
    as C-TX-DMAB-ALT does; a dose here would meet C-SAFE-DMAB-CKD critical at signing."""
    card = _cards(client, "review-anabolic-follow-on-dialysis")["C-ANABOLIC-FOLLOW-ON"]
    created = _created(card)
    assert not [r for r in created if r["resourceType"] == "MedicationRequest"]
    assert any(r["code"]["coding"][0]["code"] == "306286007" for r in created if r["resourceType"] == "ServiceRequest")


def test_acute_kidney_injury_summary_names_the_injury_not_a_low_egfr(client):
    card = _cards(client, "c-safe-renal-zoledronate-acute-kidney-injury", "order-sign")["C-SAFE-RENAL"]
    assert "acute kidney injury" in card["summary"].lower()
    assert "below 35" not in card["summary"]


def test_glucocorticoid_card_orders_no_calcium_on_dialysis(client):
    """Second-pass 1: no generic calcium carbonate / cholecalciferol on dialysis or CKD 4-5,
    C-GIOP included (it offered both to a man on dialysis with no other bone card)."""
    card = _cards(client, "review-giop-dialysis-prednisone-10-mg")["C-GIOP"]
    assert not [r for r in _created(card) if r["resourceType"] == "MedicationRequest"]
    assert "nephrology" in card["detail"]


def test_denosumab_on_dialysis_with_low_calcium_is_held_not_kept(client):
    """C-SAFE-DMAB-CKD offered "keep the denosumab order" beside C-SAFE-HYPOCA's hold
    (Prolia label: correct hypocalcemia before the dose): with a low calcium, hold only."""
    cards = _cards(client, "review-combo-dialysis-hypoca-vitd-fracture-steroid-dmab-lapsed", "order-sign")
    for card in (cards["C-SAFE-DMAB-CKD"], cards["C-SAFE-HYPOCA"]):
        assert card["suggestions"] and all(any(a["type"] == "delete" for a in s["actions"])
                                           for s in card["suggestions"])


def test_bisphosphonate_start_card_with_low_calcium_says_so_and_offers_no_order(client):
    """Fosamax label: hypocalcemia is a contraindication. The start card still fires (the
    osteoporosis needs treating) but says calcium comes first, offers no bisphosphonate
    order and names the card that would stop it."""
    card = _cards(client, "review-hypoca-ca-8-1-patient-view")["C-TX-BP"]
    assert "nothing on record against" not in card["detail"]
    assert "low calcium to correct before an oral bisphosphonate" in card["detail"]
    assert not [r for r in _created(card) if r["resourceType"] == "MedicationRequest"]
    assert "No alendronate or risedronate order offered here: Low calcium" in card["detail"]
