"""Second clinical review (after issues 12 and 14): what real EHRs send that the
rules misread, each pinned on its review2-* fixture and checked through the real
HTTP endpoint on the card's content, beyond the expect/forbid tags that
test_fixture_scenarios checks."""

from __future__ import annotations

import datetime as dt

import pytest

from cds_service.app import create_app
from tests.conftest import TEST_SECRET
from tests.unbudgeted import fixture_cards, unbudgeted_client

TODAY = dt.date.today()


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    return unbudgeted_client(tmp_path_factory, "review2")


def cards(client, name, hook="patient-view"):
    return fixture_cards(client, name, hook, TODAY)


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
    # the one choice at this kidney function is the recommended one, not "an alternative"
    assert [s["isRecommended"] for s in card["suggestions"]] == [True]


def test_fractionated_vitamin_d_reads_the_total(client):
    """A fractionated 25-OH vitamin D (LC-MS/MS) reports the total with its D2 and D3 fractions
    on one draw: the D2 fraction (2 ng/mL) listed last read as a severe deficiency, with a
    50,000 IU repletion order."""
    shown = cards(client, "review2-vitd-fractionated-total-36-d2-fraction-2")
    assert "C-VITD-LOW" not in shown
    low = cards(client, "review2-vitd-fractionated-near-miss-total-15")["C-VITD-LOW"]
    assert "25-OH vitamin D 15 ng/mL" in low["detail"]


def suggestion_drugs(card):
    """[(label, [drug displays created])] in the card's order."""
    return [(s["label"], [c["display"] for a in s["actions"] if a["type"] == "create"
                          for c in (a["resource"].get("medicationCodeableConcept") or {}).get("coding", ())])
            for s in card.get("suggestions", ())]


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_alendronate_ordered_at_kidney_function_30_to_35_is_swapped_for_risedronate(client, hook):
    """The 30-35 change: C-TX-BP offers risedronate there (Actonel label: not below 30; ACP 2023
    Rec 1a, a bisphosphonate first). C-SAFE-RENAL on an alendronate order at eGFR 34 sent the
    same patient to denosumab instead: one chart, two answers. Risedronate comes first, denosumab
    stays as the alternative."""
    card = cards(client, "c-safe-renal-alendronate-egfr-34", hook)["C-SAFE-RENAL"]
    offered = suggestion_drugs(card)
    assert "risedronate" in offered[0][1][0] and card["suggestions"][0]["isRecommended"]
    assert any("denosumab" in d for _, drugs in offered for d in drugs)
    assert "risedronate" in card["detail"].lower()
    # below 30 no oral bisphosphonate is within its label: no risedronate
    low = cards(client, "c-safe-renal-alendronate-crcl-28-egfr-48", hook)["C-SAFE-RENAL"]
    assert not any("risedronate" in d for _, drugs in suggestion_drugs(low) for d in drugs)


def test_active_alendronate_at_kidney_function_30_to_35_names_risedronate(client):
    card = cards(client, "c-safe-renal-active-alendronate-egfr-34")["C-SAFE-RENAL"]
    assert "risedronate 35 mg once weekly" in card["detail"].lower()


def test_dxa_due_says_baseline_or_how_old_the_last_scan_is(client):
    """Real-world charts read "A repeat bone density scan is due ...: no DXA on file", and
    "last DXA on 2018-10-14, 2 years ago or more" for a scan 8 years old."""
    none = cards(client, "enc-snomed-hip-fracture-359817006")["C-MON-DXA-DUE"]
    assert "repeat" not in none["detail"].lower() and "no DXA on file" in none["detail"]
    old = cards(client, "c-mon-dxa-due-on-alendronate-25-months")["C-MON-DXA-DUE"]
    assert "25 months ago" in old["detail"] and "or more" not in old["detail"]


@pytest.fixture(scope="module")
def production_client(tmp_path_factory):
    """Production budgets: 2 info cards, 1 routine card, routine cards wait for decision and test cards."""
    app = create_app({"CDS_DATABASE_URL": f"sqlite:///{tmp_path_factory.mktemp('review2-budget')}/cds.db",
                      "CDS_AUTH_REQUIRED": "false", "CDS_PATIENT_HASH_SECRET": TEST_SECRET,
                      "CDS_ALLOWED_FHIR_SERVERS": "https://fhir.example.org/r4"})
    app.testing = True
    return app.test_client()


@pytest.mark.parametrize("name", ["screen-hip-fracture-egfr-28-vitd-14-falls",
                                  "review2-falls-fall-3-months-ago-untreated-osteoporosis"])
def test_a_recent_fall_or_fracture_does_not_wait_for_its_falls_assessment(production_client, name):
    """Routine cards wait while a drug-decision or test card shows (BATES03: one thing at a
    time), and those cards do not mention falls. After a fall or a fragility fracture in the
    last 12 months with no fall-risk assessment since, the assessment is part of the fracture's
    care (World Falls Guidelines 2022: multifactorial assessment for anyone presenting with a
    fall or fracture; CDC STEADI): it must not wait behind a DXA or a drug card for weeks."""
    shown = cards(production_client, name)
    assert "C-FALLS" in shown, sorted(shown)
    assert "fall" in shown["C-FALLS"]["detail"].lower()


@pytest.mark.parametrize("name", ["tx-bp-postmenopausal-osteoporosis", "review2-falls-near-miss-fall-14-months-ago",
                                  "c-tx-anabolic-injurious-fall-wrist-fracture"])
def test_falls_without_a_recent_event_still_take_their_turn(production_client, name):
    """No fall or fracture in the last 12 months (an injurious fall two years ago included):
    the yearly assessment is routine care and takes its turn."""
    shown = cards(production_client, name)
    assert "C-FALLS" not in shown and shown.keys() & {"C-TX-BP", "C-TX-ANABOLIC"}


def test_egfr_reported_as_a_bound(client):
    """Labs report a normal eGFR as a bound (">60"), as text or with a comparator: the bound is
    known kidney function (no "eGFR missing" card) and the card says ">60", not "60". An upper
    bound above the lowest kidney limit ("<60": could be 20) is no reading at all."""
    from cds_service.record import build_record

    for name in ("review2-egfr-value-string-above-60", "review2-egfr-comparator-above-60"):
        shown = cards(client, name)
        assert "C-LAB-BASELINE" not in shown and "eGFR >60 mL/min/1.73m2" in shown["C-TX-BP"]["detail"]

    def egfr(value):
        res = {"resourceType": "Observation", "id": "e", "status": "final", "subject": {"reference": "Patient/p"},
               "code": {"coding": [{"system": "http://loinc.org", "code": "98979-8"}]},
               "effectiveDateTime": TODAY.isoformat(), **value}
        record = build_record({"patient": {"resourceType": "Patient", "id": "p", "gender": "female",
                                           "birthDate": "1950-01-01"},
                               "observations": {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": res}]}},
                              today=TODAY, patient_id="p")
        lab = record.lab("egfr")
        return lab and (lab.comparator, lab.value)

    assert egfr({"valueString": "< 15"}) == ("<", 15.0)
    assert egfr({"valueString": "<60"}) is None
    assert egfr({"valueQuantity": {"value": 60, "comparator": "<", "unit": "mL/min/{1.73_m2}"}}) is None
    assert egfr({"valueString": "see note"}) is None

