"""Review 16, switches and stops: a card that says stop the drug on board offers the order that
does it (a FHIR `update` of the patient's active MedicationRequest to status `stopped`,
rules.orders.stop_actions). Charts from tests.test_rules_second_pass's helpers, judged by the
engine as the app runs it (engine.evaluate, strict: order review included). Sources:
second-pass.md sections 2 and 4 (C-AR-COMPLICATION: hold the bisphosphonate and refer;
denosumab is never simply stopped; C-TX-FAILURE: consider a switch; C-SAFE-ROMO-CV on
patient-view: suggest stopping it), SAFE-15 (C-DUP-ANTIRES), Prolia/Fosamax/Evenity labels."""

from __future__ import annotations

from tests.test_rules_second_pass import ALN, DMAB, ROMO, ZOL, cards, cond, draft, given, med, record

AFF = cond("M84.751A", 30)
VERTEBRAL = cond("M80.08XA", 30)


def _order(*resources, drafts, age=72):
    return cards(record(*resources, age=age, drafts=drafts), "order-sign")


def _stops(suggestion):
    """The ids of the orders a suggestion marks stopped (none for any other action)."""
    return [a["resource"]["id"] for a in suggestion["actions"]
            if a["type"] == "update" and a["resource"]["status"] == "stopped"]


def _deletes(suggestion):
    return [a["resourceId"] for a in suggestion["actions"] if a["type"] == "delete"]


# ---------------------------------------------------------------------------
# 1. C-DUP-ANTIRES on a switch offered only "Remove the new antiresorptive order" (chart e19: after an
# atypical femoral fracture that kept the alendronate C-AR-COMPLICATION says to hold; rw_c34852c9:
# beside C-TX-FAILURE's "consider a switch"; rw_15e2659f, rw_64cee79e, rw_f120016e).
# ---------------------------------------------------------------------------

def test_atypical_fracture_on_alendronate_denosumab_order_stops_the_alendronate_first():
    got = _order(AFF, med(ALN, 7 * 365, rid="aln"), drafts=[draft(DMAB, "d-dmab")])
    dup = got["C-DUP-ANTIRES"]["suggestions"]
    assert _stops(dup[0]) == ["aln"] and dup[0]["isRecommended"] and dup[0]["label"].startswith("Hold alendronate")
    stop = dup[0]["actions"][0]["resource"]
    assert stop["statusReason"]["text"] == "Held: atypical femoral fracture on record"
    assert stop["medicationCodeableConcept"] == ALN and stop["authoredOn"]  # the EHR's own order, status changed
    assert _deletes(dup[1]) == ["MedicationRequest/d-dmab"] and not dup[1]["isRecommended"]
    assert dup[1]["label"] == "Remove the new denosumab order (alendronate is held either way)"  # no 'keep alendronate'
    assert "to be held after the atypical femoral fracture" in got["C-DUP-ANTIRES"]["detail"]


def test_atypical_fracture_on_alendronate_zoledronic_acid_order_holds_both():
    """A second bisphosphonate ordered after the fracture: C-AR-COMPLICATION removes the draft, C-DUP-ANTIRES
    holds the alendronate; neither offers to keep a bisphosphonate."""
    got = _order(AFF, med(ALN, 7 * 365, rid="aln"), drafts=[draft(ZOL, "d-zol")])
    assert _stops(got["C-DUP-ANTIRES"]["suggestions"][0]) == ["aln"]
    assert _deletes(got["C-AR-COMPLICATION"]["suggestions"][0]) == ["MedicationRequest/d-zol"]
    assert not any(s["label"].startswith("Keep") for c in got.values() for s in c.get("suggestions", ()))


def test_atypical_fracture_denosumab_draft_not_on_board_is_no_stop_of_denosumab():
    """C-AR-COMPLICATION on a denosumab DRAFT with none given: the rebound needs a dose given, so no
    'never stop it' and no removal 'only with a follow-on plan'; the Prolia label's same risk, the
    specialist's choice, and the bisphosphonate on board held."""
    card = _order(AFF, med(ALN, 7 * 365, rid="aln"), drafts=[draft(DMAB, "d-dmab")])["C-AR-COMPLICATION"]
    text = card["summary"] + card["detail"]
    assert "never" not in text and "follow-on plan" not in str(card["suggestions"])
    assert "a new start" in card["summary"] and "Prolia label lists the same complications" in card["detail"]
    assert "Hold alendronate" in card["detail"] and "On alendronate since" in card["detail"]
    removal = card["suggestions"][-1]
    assert _deletes(removal) == ["MedicationRequest/d-dmab"] and "not yet given" in removal["label"]
    assert card["suggestions"][0]["isRecommended"] and "endocrinolog" in card["suggestions"][0]["label"]


def test_denosumab_on_board_keeps_never_simply_stopped():
    """Quiet control: denosumab given 4 months ago and re-ordered: the rebound text and the
    removal 'only with a follow-on plan agreed' stay."""
    card = _order(AFF, med(DMAB, 400), given(DMAB, 120), drafts=[draft(DMAB)])["C-AR-COMPLICATION"]
    assert "never simply stopped" in card["detail"] and "a new start" not in card["summary"]
    assert "only with a follow-on plan agreed" in card["suggestions"][-1]["label"]


def test_fracture_on_alendronate_switch_is_the_recommended_way():
    """rw_c34852c9: C-TX-FAILURE (a fracture 12+ months into alendronate) advises a switch."""
    resources = (med(ALN, 800, rid="aln"), VERTEBRAL)
    assert "C-TX-FAILURE" in cards(record(*resources))
    dup = _order(*resources, drafts=[draft(ZOL, "d-zol")])["C-DUP-ANTIRES"]["suggestions"]
    assert _stops(dup[0]) == ["aln"] and dup[0]["isRecommended"]
    assert dup[0]["label"] == "Switch to zoledronic acid after the fracture on alendronate: stop the active alendronate order"
    assert _deletes(dup[1]) == ["MedicationRequest/d-zol"]


def test_plain_switch_offers_both_neither_recommended():
    """rw_15e2659f: alendronate active, denosumab ordered, no complication, no failure: the card cannot
    tell a switch from a duplicate; keeping stays first."""
    dup = _order(med(ALN, 300, rid="aln"), drafts=[draft(DMAB, "d-dmab")])["C-DUP-ANTIRES"]
    labels = [s["label"] for s in dup["suggestions"]]
    assert labels == ["Keep alendronate: remove the new denosumab order",
                      "Switch to denosumab: stop the active alendronate order"]
    assert not any(s["isRecommended"] for s in dup["suggestions"]) and _stops(dup["suggestions"][1]) == ["aln"]
    assert "If this is a switch, stop the alendronate order" in dup["detail"]


def test_two_drafts_and_a_statement_only_drug_are_unchanged():
    """Quiet controls: two new orders and nothing current (keep either, no stop); a drug on record
    only as a MedicationStatement has no order to stop (the one removal, as before)."""
    both = _order(drafts=[draft(DMAB, "d-dmab"), draft(ALN, "d-aln")])["C-DUP-ANTIRES"]
    assert [s["label"] for s in both["suggestions"]] == [
        "Keep the alendronate order: remove the denosumab order", "Keep the denosumab order: remove the alendronate order"]
    statement = {"resourceType": "MedicationStatement", "id": "st", "status": "active", "medicationCodeableConcept": ALN,
                 "effectivePeriod": {"start": "2024-01-01"}}
    listed = _order(statement, drafts=[draft(DMAB, "d-dmab")])["C-DUP-ANTIRES"]
    assert [s["label"] for s in listed["suggestions"]] == ["Remove the new antiresorptive order"]


# ---------------------------------------------------------------------------
# C-AR-COMPLICATION on patient-view said "hold it" of a bisphosphonate with no order that holds it.
# ---------------------------------------------------------------------------

def test_atypical_fracture_on_alendronate_patient_view_offers_the_hold():
    card = cards(record(AFF, med(ALN, 7 * 365, rid="aln")))["C-AR-COMPLICATION"]
    first = card["suggestions"][0]
    assert _stops(first) == ["aln"] and first["isRecommended"] and first["label"] == "Hold alendronate: stop its active order"
    assert any("endocrinolog" in s["label"] for s in card["suggestions"][1:])


def test_a_stop_is_never_judged_as_a_new_order():
    """A stopped alendronate order is no alendronate order: in a pregnancy (C-SAFE-PREGNANCY,
    critical, vetoes any alendronate order suggested) the hold stays."""
    card = cards(record(AFF, cond("Z33.1", 60), med(ALN, 400, rid="aln"), age=38))["C-AR-COMPLICATION"]
    assert _stops(card["suggestions"][0]) == ["aln"]


def test_denosumab_on_board_patient_view_offers_no_stop():
    """Quiet control: denosumab is never simply stopped: no stop action."""
    card = cards(record(AFF, med(DMAB, 400), given(DMAB, 120)))["C-AR-COMPLICATION"]
    assert not any(_stops(s) for s in card["suggestions"])


# ---------------------------------------------------------------------------
# 2. C-SAFE-ROMO-CV on patient-view said "stop romosozumab" and offered only the follow-on orders
# (chart e09: MI 20 days ago during a course). Second-pass 2: suggest stopping it and planning the
# antiresorptive.
# ---------------------------------------------------------------------------

def test_mi_during_romosozumab_offers_the_stop_first():
    card = cards(record(med(ROMO, 150, rid="romo"), given(ROMO, 25), cond("I21.4", 20)))["C-SAFE-ROMO-CV"]
    first = card["suggestions"][0]
    assert _stops(first) == ["romo"] and first["isRecommended"] and first["label"] == "Stop romosozumab: no further doses"
    assert any("follow on" in s["label"] for s in card["suggestions"][1:])  # the antiresorptive still planned


def test_undated_mi_on_romosozumab_offers_the_stop_last():
    """The MI's date unknown: the card asks to confirm it first, so the stop is offered after the
    follow-on, not recommended."""
    undated = {"resourceType": "Condition", "id": "mi", "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm",
                                                                            "code": "I21.4"}]}}
    card = cards(record(med(ROMO, 150, rid="romo"), given(ROMO, 25), undated))["C-SAFE-ROMO-CV"]
    assert _stops(card["suggestions"][-1]) == ["romo"] and not card["suggestions"][-1]["isRecommended"]
    assert not _stops(card["suggestions"][0])


def test_romosozumab_given_without_an_active_order_has_no_stop():
    """Quiet control: doses given, no active order on record: nothing to mark stopped; the card is
    as before."""
    card = cards(record(given(ROMO, 55), given(ROMO, 25), cond("I21.4", 20)))["C-SAFE-ROMO-CV"]
    assert not any(_stops(s) for s in card["suggestions"])
