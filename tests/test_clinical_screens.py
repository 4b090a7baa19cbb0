"""Whole screens, as a clinician sees them: realistic multi-problem patients
(fhir_fixtures/patients/screen-*.json) through the engine on their hooks.

Each test names the exact set of cards the screen shows and checks that the
cards agree with each other: no order code suggested by two cards, no drug
card beside a card that forbids that drug, and every fixture screen (not only
these) free of duplicate orders. The clinical decisions behind the sets are in
the rule docstrings (treatment.secondary_evaluation, monitoring.baseline_labs,
treatment.anabolic_options, treatment._labs_note, engine.COURSE_CARDS).
"""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from cds_service import engine
from cds_service.fixtures import (
    drafts_from_bundle,
    is_selected,
    load_patient,
    patient_names,
    prefetch_from_bundle,
)
from cds_service.record import build_record

TODAY = dt.date(2025, 6, 1)
HOOKS = ("patient-view", "order-select", "order-sign")


def screen(name: str, hook: str = "patient-view", edit=None) -> dict[str, dict]:
    """Cards by id for one fixture on one hook; edit(bundle) may change the Bundle first."""
    today = TODAY
    bundle = load_patient(name, today=today)
    if edit:
        edit(bundle)
    drafts = drafts_from_bundle(bundle) if hook != "patient-view" else []
    selections = [f"{d['resourceType']}/{d['id']}" for d in drafts if is_selected(d)] if hook == "order-select" else None
    record = build_record(prefetch_from_bundle(bundle), drafts=drafts, today=today, selections=selections)
    cards = engine.evaluate(hook, record, today, strict=True)
    ids = [c["source"]["topic"]["code"] for c in cards]
    assert len(ids) == len(set(ids)), ids
    return dict(zip(ids, cards, strict=True))


def order_codes(card: dict) -> set[tuple[str, str]]:
    """(system, code) of every resource a card's suggestions create (text when uncoded)."""
    out = set()
    for s in card.get("suggestions") or ():
        for a in s.get("actions") or ():
            res = a.get("resource")
            if a["type"] != "create" or not res:
                continue
            concept = res.get("medicationCodeableConcept") or res.get("code") or {}
            codings = concept.get("coding") or [{"system": "text", "code": concept.get("text", "")}]
            out |= {(c.get("system", ""), c.get("code", "")) for c in codings}
    return out


def assert_no_shared_orders(cards: dict[str, dict]) -> None:
    for (a, ca), (b, cb) in itertools.combinations(cards.items(), 2):
        shared = order_codes(ca) & order_codes(cb)
        assert not shared, f"{a} and {b} both suggest {sorted(shared)}"


def text(card: dict) -> str:
    return card["summary"] + "\n" + card["detail"]


def test_hip_fracture_with_ckd_low_vitamin_d_and_falls():
    """Woman 78, hip fracture 7 weeks ago, eGFR 28, 25-OH D 14 ng/mL, falls,
    no DXA, no bone drug: very high risk, but CKD 4: the CKD-MBD work-up and a
    specialist before any bone drug (review 13); vitamin D repletion on its own card,
    calcium only on the supplement card; baseline DXA (not a screening DXA)."""
    cards = screen("screen-hip-fracture-egfr-28-vitd-14-falls")
    assert set(cards) == {"C-TX-ANABOLIC", "C-VITD-LOW", "C-SUPP-CAVD", "C-MON-DXA-DUE", "C-EXERCISE", "C-FALLS"}
    assert list(cards)[:2] == ["C-TX-ANABOLIC", "C-VITD-LOW"]  # warnings first
    assert_no_shared_orders(cards)

    anabolic = cards["C-TX-ANABOLIC"]
    # eGFR 28 is CKD 4 (review 13): a low T-score or a fracture does not tell osteoporosis from
    # CKD-MBD (AACE20, ES19, KDIGO 2017): no one-click anabolic, the CKD-MBD labs and a referral
    assert "CKD-mineral bone disorder work-up and specialist" in anabolic["summary"]
    assert "zoledronic acid 5 mg yearly" not in anabolic["detail"]
    assert "1,25-(OH)2 vitamin D" in anabolic["detail"] and "Evenity label" in anabolic["detail"]
    # it does not call the labs fine while vitamin D is 14; with eGFR 28 it repletes with nephrology,
    # as C-VITD-LOW says (facts.vitamin_d_repletion_hold)
    assert "**Vitamin D is deficient:** replete it with nephrology" in anabolic["detail"]
    assert "25-OH vitamin D 14 ng/mL on 2025-05-20" in anabolic["detail"]
    assert anabolic["detail"].lower().count("hip fracture (probable fragility fracture) (s72.001a)") == 1
    labels = [s["label"] for s in anabolic["suggestions"]]
    assert labels == ["CKD-MBD labs and a referral to nephrology or a bone specialist before any osteoporosis drug"]
    assert ("http://snomed.info/sct", "306286007") in order_codes(anabolic)
    assert not any(system == "http://www.nlm.nih.gov/research/umls/rxnorm" for system, _ in order_codes(anabolic))

    assert cards["C-VITD-LOW"]["indicator"] == "warning"
    supp = cards["C-SUPP-CAVD"]
    # eGFR 28 is CKD 4: no generic calcium / vitamin D order, nephrology decides (second-pass 1)
    assert order_codes(supp) == set() and "nephrology" in supp["summary"]
    assert ("http://www.ama-assn.org/go/cpt", "77080") in order_codes(cards["C-MON-DXA-DUE"])
    assert ("http://snomed.info/sct", "444831000124102") in order_codes(cards["C-EXERCISE"])  # PT on one card only
    assert ("http://loinc.org", "73830-2") in order_codes(cards["C-FALLS"])
    for card in cards.values():
        if card["indicator"] != "info":
            assert card["overrideReasons"] and all(r["display"] for r in card["overrideReasons"])


def test_man_70_vertebral_fracture_smoker_without_labs():
    """Man 70, vertebral fracture 3 years ago, T -2.6, daily smoker, no labs:
    oral BP (ACP Rec 1b) beside the secondary-cause evaluation (both allowed
    for men >= 50); baseline labs ordered once, on C-LAB-BASELINE."""
    cards = screen("screen-man-70-vertebral-fracture-smoker")
    assert set(cards) == {"C-TX-BP", "C-SECONDARY-EVAL", "C-LAB-BASELINE", "C-SUPP-CAVD", "C-LIFESTYLE",
                          "C-EXERCISE", "C-FALLS"}
    assert_no_shared_orders(cards)
    tx_bp = cards["C-TX-BP"]
    assert "a man aged 50 or older" in tx_bp["detail"] and "Recommendation 1b" in tx_bp["detail"]
    assert "Before the first dose, obtain baseline labs" in tx_bp["detail"]
    sec = cards["C-SECONDARY-EVAL"]
    assert sec["summary"].startswith("Man with osteoporosis: evaluate for secondary causes")
    assert "alongside any treatment" in sec["detail"]
    assert ("http://loinc.org", "2986-8") in order_codes(sec)  # morning total testosterone
    baseline = {c for _, c in order_codes(cards["C-LAB-BASELINE"])}
    assert {"98979-8", "17861-6", "62292-8", "1751-7"} <= baseline
    assert "Current smoker" in cards["C-LIFESTYLE"]["detail"] or "smok" in cards["C-LIFESTYLE"]["detail"].lower()
    assert "Spine-sparing" in cards["C-EXERCISE"]["detail"]


def test_denosumab_8_months_with_alendronate_draft():
    """Woman 72 on denosumab, last injection 8 months ago: the overdue card
    (critical) owns the drug decision, no drug-start card beside it. Signing
    alendronate 8 months after the last injection is the recommended
    transition (ECTS 2021), not a duplicate antiresorptive: the order hooks
    stay quiet (supplements are active)."""
    cards = screen("screen-denosumab-8-months-alendronate-draft")
    # no standing monitoring card beside them (second-pass 7): the overdue dose is what is due
    assert set(cards) == {"C-DMAB-OVERDUE", "C-EXERCISE", "C-FALLS"}
    overdue = cards["C-DMAB-OVERDUE"]
    assert overdue["indicator"] == "critical" and next(iter(cards)) == "C-DMAB-OVERDUE"
    assert overdue["selectionBehavior"] == "at-most-one"
    assert {"993452", "904431"} <= {c for _, c in order_codes(overdue)}
    assert overdue["overrideReasons"] and all(r["display"] for r in overdue["overrideReasons"])
    assert_no_shared_orders(cards)
    for hook in ("order-select", "order-sign"):
        assert screen("screen-denosumab-8-months-alendronate-draft", hook) == {}


def test_denosumab_2_months_with_alendronate_draft_is_a_duplicate():
    """Contrast: the same patient with the last injection 2 months ago
    signing alendronate gets the duplicate-antiresorptive warning."""
    def last_dose_2_months_ago(bundle):
        last = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "MedicationAdministration"][-1]
        last["effectiveDateTime"] = (TODAY - dt.timedelta(days=61)).isoformat()

    cards = screen("screen-denosumab-8-months-alendronate-draft", "order-sign", edit=last_dose_2_months_ago)
    assert "C-DUP-ANTIRES" in cards and cards["C-DUP-ANTIRES"]["indicator"] == "warning"
    assert_no_shared_orders(cards)


@pytest.mark.parametrize("name", patient_names())
def test_no_two_cards_on_a_fixture_screen_suggest_the_same_order(name):
    for hook in HOOKS:
        assert_no_shared_orders(screen(name, hook))
