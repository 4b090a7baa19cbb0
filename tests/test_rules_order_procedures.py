"""Order-time rules other than drug safety: C-MASSAGE-SAFETY (MASS-1),
C-MON-DXA-DUP (MON-2) and C-SUPP-CAVD on order-select/order-sign (TX-7)."""

from __future__ import annotations

import datetime as dt

import pytest

from cds_service import engine
from cds_service import fixtures as fx
from cds_service.card_render import OVERRIDE_REASON_SYSTEM
from cds_service.fhir import terminology as t
from cds_service.record import build_record
from cds_service.rules import massage, order_checks
from cds_service.rules.settings import ClinicalSettings
from tests.conftest import TODAY, coding
from tests.requests_for_tests import SERVICE_FOR, full_prefetch, hook_request

S = ClinicalSettings()
PID = "p-ord"


def _bundle(*resources):
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def _t(value, date="2024-09-10", code="38263-0", oid=None):
    return {"resourceType": "Observation", "id": oid or f"t{code}{date}", "status": "final",
            "code": coding(t.LOINC, code), "effectiveDateTime": date, "valueQuantity": {"value": value}}


def _cond(code, onset, system=t.ICD10CM, cid=None):
    return {"resourceType": "Condition", "id": cid or f"c{code}", "code": coding(system, code), "onsetDateTime": onset}


def _med(text, start, status="active", mid=None, code=None):
    concept = coding(t.RXNORM, code) if code else {"text": text}
    return {"resourceType": "MedicationRequest", "id": mid or text.split()[0], "status": status, "intent": "order",
            "authoredOn": start, "medicationCodeableConcept": concept}


def _massage(sid="sr-m", concept=None, performer=None, note=None):
    r = {"resourceType": "ServiceRequest", "status": "draft", "intent": "order",
         "subject": {"reference": f"Patient/{PID}"},
         "code": concept if concept is not None else coding(t.CPT, "97124")}
    if sid:
        r["id"] = sid
    if performer:
        r["performerType"] = performer
    if note:
        r["note"] = [{"text": note}]
    return r


def _dxa_order(sid="sr-dxa", concept=None, **extra):
    return {"resourceType": "ServiceRequest", "id": sid, "status": "draft", "intent": "order",
            "subject": {"reference": f"Patient/{PID}"},
            "code": concept if concept is not None else coding(t.CPT, "77080"), **extra}


def _record(obs=(), conditions=(), meds=(), procedures=(), drafts=(), selections=None, today=TODAY,
            birth="1955-04-20", settings=S):
    return build_record({
        "patient": {"resourceType": "Patient", "id": PID, "gender": "female", "birthDate": birth},
        "observations": _bundle(*obs), "conditions": _bundle(*conditions),
        "medicationRequests": _bundle(*meds), "procedures": _bundle(*procedures),
    }, drafts=list(drafts), selections=selections, today=today, settings=settings)


def _cards(record, hook="order-sign", today=TODAY, settings=S):
    return {c["source"]["topic"]["code"]: c for c in engine.evaluate(hook, record, today, settings, strict=True)}


def _fixture_cards(name, hook, today=TODAY, settings=S):
    bundle = fx.load_patient(name, today=today)
    drafts = fx.drafts_from_bundle(bundle)
    selections = ([f"{r['resourceType']}/{r['id']}" for r in drafts if fx.is_selected(r)]
                  if hook == "order-select" else None)
    record = build_record(fx.prefetch_from_bundle(bundle), drafts=drafts, today=today,
                          selections=selections, settings=settings)
    return _cards(record, hook, today, settings)


# ---------------------------------------------------------------------------
# C-MASSAGE-SAFETY
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_massage_warning_for_osteopenia_names_technique_and_anticoagulant(hook):
    card = _fixture_cards("c-massage-safety-osteopenia-on-warfarin", hook)["C-MASSAGE-SAFETY"]
    assert card["indicator"] == "warning"
    detail = card["detail"]
    assert "Osteopenia: Femoral neck T-score -1.8 on 2024-09-10" in detail
    assert "Active anticoagulant since 2024-11-02 (MedicationRequest/med-warfarin)" in detail
    assert "Modify technique: anticoagulant (bruising" in detail
    for words in ("deep tissue", "joint mobilisation", "muscle stripping", "friction", "spine, ribs, hips, wrists",
                  "light effleurage", "lymphatic drainage", "craniosacral", "side-lying"):
        assert words in detail
    assert "long-term corticosteroid (" not in detail and "fragile skin (" not in detail
    assert [r["code"] for r in card["overrideReasons"]] == ["therapist-briefed", "fracture-cleared",
                                                            "already-discussed", "not-applicable"]
    assert all(r["display"] and r["system"] == OVERRIDE_REASON_SYSTEM for r in card["overrideReasons"])


def test_massage_suggestion_updates_the_draft_in_place_with_the_precautions():
    card = _fixture_cards("c-massage-safety-osteopenia-on-warfarin", "order-sign")["C-MASSAGE-SAFETY"]
    [suggestion] = card["suggestions"]
    [action] = suggestion["actions"]
    assert action["type"] == "update" and suggestion["isRecommended"]
    res = action["resource"]
    assert res["resourceType"] == "ServiceRequest" and res["id"] == "sr-massage-m1"  # same order, not a new one
    assert res["code"]["coding"][0]["code"] == "97124" and res["status"] == "draft"
    assert res["subject"] == {"reference": "Patient/ord-mass-01"}
    note = res["note"][-1]["text"]
    assert note.startswith(massage.NOTE_MARK)
    assert "Avoid: deep tissue massage" in note and "gentle Swedish massage" in note
    assert "anticoagulant" in note and "FRESH" not in note


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_fresh_fracture_10_weeks_is_critical_13_weeks_is_warning(hook):
    card = _fixture_cards("c-massage-safety-fresh-vertebral-fracture-10-weeks", hook)["C-MASSAGE-SAFETY"]
    assert card["indicator"] == "critical"
    assert "fresh vertebral fracture 10 weeks ago" in card["summary"]
    assert "Vertebral fragility fracture (M80.08XA) on 2025-03-23 (10 weeks ago)" in card["detail"]
    assert "never massage over or near the fracture site" in card["detail"]
    labels = {s["label"]: s for s in card["suggestions"]}
    cancel = labels["Remove this massage order until the fracture is cleared"]["actions"][0]
    assert cancel == {"type": "delete", "description": "Delete the draft massage order",
                      "resourceId": "ServiceRequest/sr-massage-m2"}
    update = labels["Add the osteoporosis massage precautions to this massage order"]["actions"][0]
    assert "FRESH VERTEBRAL FRACTURE on 2025-03-23 (10 weeks)" in update["resource"]["note"][-1]["text"]
    assert update["resource"]["performerType"]["coding"][0]["code"] == "225700000X"

    card = _fixture_cards("c-massage-safety-near-miss-vertebral-fracture-13-weeks", hook)["C-MASSAGE-SAFETY"]
    assert card["indicator"] == "warning"
    assert "(within 12 months)" in card["detail"] and "Physician clearance** is needed after a recent fracture" in card["detail"]
    assert [s["actions"][0]["type"] for s in card["suggestions"]] == ["update"]


def test_fresh_fracture_window_boundary_and_setting():
    osteo = [_t(-2.6, code="38267-1")]

    def indicator(onset, settings=S):
        card = _cards(_record(osteo, [_cond("M80.08XA", onset)], drafts=[_massage()], settings=settings),
                      settings=settings).get("C-MASSAGE-SAFETY")
        return card and card["indicator"]

    assert indicator((TODAY - dt.timedelta(days=84)).isoformat()) == "critical"  # exactly 12 weeks
    assert indicator((TODAY - dt.timedelta(days=85)).isoformat()) == "warning"
    assert indicator((TODAY - dt.timedelta(days=91)).isoformat(), ClinicalSettings(fresh_fracture_weeks=14)) == "critical"
    assert indicator((TODAY + dt.timedelta(days=3)).isoformat()) == "warning"  # future onset: not a fresh fracture


def test_massage_quiet_for_normal_bmd_unknown_bmd_and_no_massage():
    for name in ("c-massage-safety-near-miss-normal-bmd",):
        for hook in ("order-select", "order-sign"):
            assert "C-MASSAGE-SAFETY" not in _fixture_cards(name, hook)
    assert "C-MASSAGE-SAFETY" not in _cards(_record(drafts=[_massage()]))  # no DXA: unknown, not abnormal
    assert "C-MASSAGE-SAFETY" not in _cards(_record([_t(-1.8)], drafts=[_dxa_order()]))  # no massage ordered
    pt = _massage(concept=coding(t.SNOMED, "444831000124102"))  # physical therapy referral is not massage
    assert "C-MASSAGE-SAFETY" not in _cards(_record([_t(-1.8)], drafts=[pt]))


def test_any_fresh_fracture_is_critical_even_without_a_bone_diagnosis():
    # A 40-year-old's traumatic wrist fracture 3 weeks ago, no DXA: still never massage over it.
    record = _record(conditions=[_cond("S52.531A", (TODAY - dt.timedelta(weeks=3)).isoformat())],
                     drafts=[_massage()], birth="1985-01-01")
    card = _cards(record)["C-MASSAGE-SAFETY"]
    assert card["indicator"] == "critical" and "a recent fracture" in card["detail"]


@pytest.mark.parametrize("concept,performer", [
    (coding(t.CPT, "97124"), None),
    ({"text": "Referral to therapist"}, coding(t.NUCC, "225700000X")),
    (coding(t.NUCC, "225700000X"), None),
    ({"text": "Therapeutic MASSAGE of the back"}, None),
])
def test_massage_draft_recognised_by_cpt_nucc_or_name(concept, performer):
    card = _cards(_record([_t(-1.8)], drafts=[_massage(concept=concept, performer=performer)]))
    assert card["C-MASSAGE-SAFETY"]["indicator"] == "warning"


def test_modifiers_corticosteroid_and_fragile_skin_are_named_with_their_facts():
    long_steroid = _med("prednisone 7.5 mg daily", (TODAY - dt.timedelta(days=200)).isoformat(), mid="pred")
    skin = _cond("D69.2", "2023-05-01", cid="skin")
    detail = _cards(_record([_t(-1.8)], [skin], [long_steroid], drafts=[_massage()]))["C-MASSAGE-SAFETY"]["detail"]
    assert "Modify technique: long-term corticosteroid" in detail
    assert f"Systemic corticosteroid since {(TODAY - dt.timedelta(days=200)).isoformat()} (200 days: long-term)" in detail
    assert "Modify technique: fragile skin" in detail and "Fragile skin on the problem list (D69.2, 2023-05-01)" in detail
    assert "anticoagulant (" not in detail

    short_steroid = _med("prednisone 20 mg daily", (TODAY - dt.timedelta(days=20)).isoformat(), mid="pred")
    detail = _cards(_record([_t(-1.8)], meds=[short_steroid], drafts=[_massage()]))["C-MASSAGE-SAFETY"]["detail"]
    assert "corticosteroid (" not in detail and "No anticoagulant, long-term corticosteroid or fragile-skin" in detail
    # long-term use coded on the problem list, with a short current course: the coded entry is the fact
    z79 = _cond("Z79.52", "2022-01-10", cid="z79")
    detail = _cards(_record([_t(-1.8)], [z79], [short_steroid], drafts=[_massage()]))["C-MASSAGE-SAFETY"]["detail"]
    assert "Long-term corticosteroid use on the problem list (Z79.52, 2022-01-10)" in detail


def test_massage_draft_already_carrying_the_precautions():
    noted = _massage(note=f"{massage.NOTE_MARK} (patient has osteopenia). Avoid: ...")
    assert "C-MASSAGE-SAFETY" not in _cards(_record([_t(-1.8)], drafts=[noted]))
    fresh = [_cond("M80.08XA", (TODAY - dt.timedelta(weeks=4)).isoformat())]
    assert _cards(_record([_t(-2.6)], fresh, drafts=[noted]))["C-MASSAGE-SAFETY"]["indicator"] == "critical"
    # two massage drafts, one already noted: the suggestion updates the other one
    card = _cards(_record([_t(-1.8)], drafts=[noted, _massage("sr-m2")]))["C-MASSAGE-SAFETY"]
    assert card["suggestions"][0]["actions"][0]["resource"]["id"] == "sr-m2"


def test_massage_draft_without_id_gets_the_card_but_no_suggestion():
    card = _cards(_record([_t(-1.8)], drafts=[_massage(sid=None)]))["C-MASSAGE-SAFETY"]
    assert card["indicator"] == "warning" and "suggestions" not in card


def test_massage_context_only_draft_is_quiet_on_select_and_judged_on_sign():
    name = "c-massage-safety-near-miss-context-only-on-select"
    assert "C-MASSAGE-SAFETY" not in _fixture_cards(name, "order-select")
    assert _fixture_cards(name, "order-sign")["C-MASSAGE-SAFETY"]["indicator"] == "warning"
    # the same with an explicit selection that names the massage draft
    record = _record([_t(-1.8)], drafts=[_massage("m1")], selections=["ServiceRequest/m1"])
    assert "C-MASSAGE-SAFETY" in _cards(record, "order-select")
    record = _record([_t(-1.8)], drafts=[_massage("m1")], selections=["ServiceRequest/other"])
    assert massage.massage_safety(record, TODAY, S) == []


# ---------------------------------------------------------------------------
# C-MON-DXA-DUP
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_dxa_11_months_fires_13_months_quiet(hook):
    card = _fixture_cards("c-mon-dxa-dup-11-months", hook)["C-MON-DXA-DUP"]
    assert card["indicator"] == "warning"
    assert "11 months after the last one (on 2024-07-01)" in card["summary"]
    assert "Previous DXA on 2024-07-01 (11.0 months before the planned scan)" in card["detail"]
    assert "Previous DXA result: Lumbar spine T-score -2.6 on 2024-07-01" in card["detail"]
    [suggestion] = card["suggestions"]
    assert suggestion["actions"] == [{"type": "delete",
                                      "description": "Delete the draft DXA order (the previous scan is less than 12 months old)",
                                      "resourceId": "ServiceRequest/sr-dxa-d1"}]
    reasons = {r["code"]: r["display"] for r in card["overrideReasons"]}
    assert reasons["new-fracture"] == "New fracture since the last DXA"
    assert reasons["glucocorticoid-start"] == "Starting high-dose glucocorticoid therapy"
    assert reasons["anabolic-baseline"] == "Baseline before or after anabolic therapy"
    assert "C-MON-DXA-DUP" not in _fixture_cards("c-mon-dxa-dup-near-miss-13-months", hook)


def test_dxa_duplicate_boundary_and_setting():
    def fires(last, settings=S):
        return "C-MON-DXA-DUP" in _cards(_record([_t(-2.0, date=last)], drafts=[_dxa_order()], settings=settings),
                                         settings=settings)

    assert fires("2024-06-10")       # 11.7 months
    assert fires("2024-06-02")       # one day short of a year
    assert not fires("2024-06-01")   # 12 calendar months: "not more than annually" allows it
    assert fires("2024-06-01", ClinicalSettings(dxa_duplicate_months=23))  # open question 4: Medicare-like window
    assert not fires("2023-06-01", ClinicalSettings(dxa_duplicate_months=23))


def test_dxa_previous_scan_from_a_procedure_only_and_no_previous_scan():
    proc = {"resourceType": "Procedure", "id": "p1", "status": "completed", "code": coding(t.CPT, "77080"),
            "performedDateTime": "2025-01-15"}
    card = _cards(_record(procedures=[proc], drafts=[_dxa_order()]))["C-MON-DXA-DUP"]
    assert "Previous DXA on 2025-01-15" in card["detail"] and "Previous DXA result" not in card["detail"]
    assert "C-MON-DXA-DUP" not in _cards(_record(drafts=[_dxa_order()]))  # first DXA: nothing to duplicate
    not_done = dict(proc, status="not-done")
    assert "C-MON-DXA-DUP" not in _cards(_record(procedures=[not_done], drafts=[_dxa_order()]))


@pytest.mark.parametrize("concept", [
    coding(t.CPT, "77081"), coding(t.CPT, "77085"), coding(t.CPT, "77086"),
    coding(t.SNOMED, "312681000"), coding(t.SNOMED, "241686001"), coding(t.LOINC, "38268-9"),
])
def test_dxa_order_codes(concept):
    record = _record([_t(-2.0, date="2025-01-01")], drafts=[_dxa_order(concept=concept)])
    assert "C-MON-DXA-DUP" in _cards(record)


def test_dxa_planned_next_year_is_not_a_duplicate_and_new_fracture_is_mentioned():
    obs = [_t(-2.0, date="2024-09-01")]
    later = _dxa_order(occurrenceDateTime="2025-10-01")  # 13 months after the last scan
    assert "C-MON-DXA-DUP" not in _cards(_record(obs, drafts=[later]))
    soon = _dxa_order(occurrencePeriod={"start": "2025-07-01"})
    assert "C-MON-DXA-DUP" in _cards(_record(obs, drafts=[soon]))
    frac = _cond("S52.531A", "2025-03-01")
    detail = _cards(_record(obs, [frac], drafts=[_dxa_order()]))["C-MON-DXA-DUP"]["detail"]
    assert "on 2025-03-01, after the previous DXA (an early repeat may be justified)" in detail


def test_dxa_context_only_draft_is_not_judged_on_select():
    record = _record([_t(-2.0, date="2025-01-01")], drafts=[_dxa_order("d1")], selections=["MedicationRequest/x"])
    assert order_checks.dxa_duplicate(record, TODAY, S) == []
    record = _record([_t(-2.0, date="2025-01-01")], drafts=[_dxa_order("d1")], selections=["ServiceRequest/d1"])
    assert order_checks.dxa_duplicate(record, TODAY, S)[0].delete_draft == "ServiceRequest/d1"


# ---------------------------------------------------------------------------
# C-SUPP-CAVD on the order hooks
# ---------------------------------------------------------------------------

PROLIA = {"resourceType": "MedicationRequest", "id": "dmab", "status": "draft", "intent": "order",
          "subject": {"reference": f"Patient/{PID}"}, "medicationCodeableConcept": coding(t.RXNORM, "993452")}
CA_DRAFT = dict(_med("calcium", "2025-06-01", "draft", "ca-d", "282465"), subject={"reference": f"Patient/{PID}"})
D_DRAFT = dict(_med("vitd", "2025-06-01", "draft", "d-d", "245500"), subject={"reference": f"Patient/{PID}"})


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_cavd_fires_beside_a_denosumab_draft_and_is_quiet_with_supplements(hook):
    card = _fixture_cards("c-supp-cavd-order-denosumab-no-supplements", hook)["C-SUPP-CAVD"]
    assert card["indicator"] == "info"
    assert "Ordering denosumab" in card["detail"] and "Draft order MedicationRequest/mr-dmab-c1 on 2025-06-01" in card["detail"]
    codes = [a["resource"]["medicationCodeableConcept"]["coding"][0]["code"] for a in card["suggestions"][0]["actions"]]
    assert codes == ["282465", "245500"]
    assert all(a["type"] == "create" for a in card["suggestions"][0]["actions"])
    assert "C-SUPP-CAVD" not in _fixture_cards("c-supp-cavd-order-near-miss-supplements-active", hook)


def test_cavd_counts_supplements_drafted_in_the_same_session():
    assert "C-SUPP-CAVD" in _cards(_record(drafts=[PROLIA]))
    assert "C-SUPP-CAVD" not in _cards(_record(drafts=[PROLIA, CA_DRAFT, D_DRAFT]))
    # order-select: the supplements are in draftOrders but not selected; they are still being ordered
    record = _record(drafts=[PROLIA, CA_DRAFT, D_DRAFT], selections=["MedicationRequest/dmab"])
    assert "C-SUPP-CAVD" not in _cards(record, "order-select")
    [finding] = order_checks.calcium_vitamin_d_on_order(_record(drafts=[PROLIA, D_DRAFT]), TODAY, S)
    assert finding.suggestions == ("calcium-carbonate",)
    assert "Vitamin D supplement being ordered in the same session" in finding.facts


def test_cavd_quiet_without_a_bone_drug_draft_and_for_unselected_bone_drug():
    assert order_checks.calcium_vitamin_d_on_order(_record(drafts=[_massage()]), TODAY, S) == []
    record = _record(drafts=[PROLIA, _massage("m1")], selections=["ServiceRequest/m1"])
    assert order_checks.calcium_vitamin_d_on_order(record, TODAY, S) == []
    assert "C-SUPP-CAVD" not in _cards(record, "order-select")


# ---------------------------------------------------------------------------
# Through the HTTP endpoint, with the public sandbox's typeless draftOrders
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_typeless_draft_orders_bundle_through_http(client, hook):
    prefetch = full_prefetch()
    pid = prefetch["patient"]["id"]
    dxa_date = (dt.date.today() - dt.timedelta(days=300)).isoformat()
    prefetch["observations"]["entry"] = [{"resource": dict(_t(-1.9, date=dxa_date), subject={"reference": f"Patient/{pid}"})}]
    draft = dict(_massage("sandbox-massage"), subject={"reference": f"Patient/{pid}"})
    dxa = dict(_dxa_order("sandbox-dxa"), subject={"reference": f"Patient/{pid}"})
    drafts = {"resourceType": "Bundle", "entry": [{"resource": draft}, {"resource": dxa}]}  # no "type", as the sandbox sends
    context = {"draftOrders": drafts}
    if hook == "order-select":
        context["selections"] = ["ServiceRequest/sandbox-massage", "ServiceRequest/sandbox-dxa"]
    body = hook_request(hook, prefetch=prefetch, **context)
    resp = client.post(f"/cds-services/{SERVICE_FOR[hook]}", json=body)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    cards = {c["source"]["topic"]["code"]: c for c in resp.get_json()["cards"]}
    assert cards["C-MASSAGE-SAFETY"]["indicator"] == "warning"
    update = cards["C-MASSAGE-SAFETY"]["suggestions"][0]["actions"][0]
    assert update["type"] == "update" and update["resource"]["id"] == "sandbox-massage"
    assert cards["C-MON-DXA-DUP"]["suggestions"][0]["actions"][0]["resourceId"] == "ServiceRequest/sandbox-dxa"
    assert all("uuid" in s for c in cards.values() for s in c.get("suggestions", ()))


def test_massage_technique_is_not_said_twice_or_against_a_modifier():
    """Clinical review: with an anticoagulant ("no deep or sustained compression") the card still
    listed myofascial release (sustained pressure) as appropriate, and with a vertebral fracture
    it gave two positioning lines."""
    card = _fixture_cards("c-massage-safety-osteopenia-on-warfarin", "order-sign")["C-MASSAGE-SAFETY"]
    note = card["suggestions"][0]["actions"][0]["resource"]["note"][-1]["text"]
    assert "myofascial" not in card["detail"] and "myofascial" not in note
    assert "gentle Swedish massage" in card["detail"] and "reflexology" in note
    fresh = _fixture_cards("c-massage-safety-fresh-vertebral-fracture-10-weeks", "order-sign")["C-MASSAGE-SAFETY"]
    assert fresh["detail"].count("Positioning") == 1 and "no unsupported prone lying" in fresh["detail"]
    assert "myofascial release" in fresh["detail"]  # no anticoagulant there
