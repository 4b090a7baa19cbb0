"""Order-time drug safety (brief section 4): card content, suggestions
(delete + create pairs), boundaries, and the sandbox's draftOrders shapes."""

import dataclasses
import datetime as dt
import uuid

import pytest

from cds_service import card_render, engine
from cds_service import fixtures as fx
from cds_service.fhir import terminology as t
from cds_service.record import build_record
from cds_service.rules.settings import ClinicalSettings
from tests.conftest import TODAY, coding
from tests.test_fixture_scenarios import SERVICE_IDS, hook_body
from tests.test_fixture_scenarios import TODAY as HTTP_TODAY  # the service dates its calls today

S = ClinicalSettings()
ORDER_HOOKS = ("order-select", "order-sign")
SAFETY_FIXTURES = [n for n in fx.patient_names() if n.startswith(("c-safe-", "c-dup-antires", "c-vitd-low"))]


def record_for(name, hook, today=TODAY, settings=S):
    bundle = fx.load_patient(name, today=today)
    drafts = fx.drafts_from_bundle(bundle) if hook != "patient-view" else ()
    selections = None
    if hook == "order-select":
        selections = [f"{r['resourceType']}/{r['id']}" for r in drafts if fx.is_selected(r)]
    return bundle, build_record(fx.prefetch_from_bundle(bundle), drafts=drafts, today=today,
                                selections=selections, settings=settings)


def cards(name, hook, today=TODAY, settings=S):
    bundle, record = record_for(name, hook, today, settings)
    pid = bundle["entry"][0]["resource"]["id"]
    return {c["source"]["topic"]["code"]: c
            for c in engine.evaluate(hook, record, today, settings, patient_id=pid, strict=True)}


def actions(card, kind):
    return [a for s in card.get("suggestions", ()) for a in s["actions"] if a["type"] == kind]


# ---------------------------------------------------------------------------
# Every suggestion of every order-safety card on every fixture
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", SAFETY_FIXTURES)
@pytest.mark.parametrize("hook", ORDER_HOOKS + ("patient-view",))
def test_delete_create_pairs_target_the_draft_and_create_valid_fhir(name, hook):
    bundle, record = record_for(name, hook)
    judged = {d.reference for d in record.judged_drafts}
    pid = bundle["entry"][0]["resource"]["id"]
    for card in engine.evaluate(hook, record, TODAY, S, patient_id=pid, strict=True):
        card_id = card["source"]["topic"]["code"]
        if card["indicator"] in ("warning", "critical"):
            assert card["overrideReasons"] and all(r["display"] for r in card["overrideReasons"]), card_id
        if not card_id.startswith(("C-SAFE-", "C-DUP-", "C-VITD-")):
            continue
        assert "{{" not in card["detail"] and "- (none)" not in card["detail"]
        if card.get("suggestions"):
            assert card["selectionBehavior"] == "at-most-one"
        for suggestion in card.get("suggestions", ()):
            deletes = [a for a in suggestion["actions"] if a["type"] == "delete"]
            if hook == "patient-view":
                assert not deletes, f"{card_id}: nothing to delete on patient-view"
            for a in deletes:
                # the relative reference of a draft the hook judges (never a context-only one)
                assert isinstance(a["resourceId"], str) and a["resourceId"] in judged, (card_id, a)
            for a in suggestion["actions"]:
                if a["type"] == "create":
                    card_render.validate_resource(a["resource"])
                    assert a["resource"]["subject"] == {"reference": f"Patient/{pid}"}
                    assert a["resource"]["status"] == "draft"


# ---------------------------------------------------------------------------
# Card content
# ---------------------------------------------------------------------------

def test_renal_alendronate_card_offers_risedronate_then_denosumab_with_calcium_check():
    # eGFR 34: below alendronate's 35, within risedronate's label (30), as C-TX-BP offers it there.
    card = cards("c-safe-renal-alendronate-egfr-34", "order-select")["C-SAFE-RENAL"]
    assert card["indicator"] == "warning"
    assert "eGFR 34 mL/min/1.73m2 on 2025-05-01 (below 35 for alendronate)" in card["detail"]
    assert "Draft order: alendronate (MedicationRequest/draft-alendronate)" in card["detail"]
    first, second, last = card["suggestions"][0], card["suggestions"][1], card["suggestions"][-1]
    assert first["isRecommended"] and not second["isRecommended"]
    assert [a["type"] for a in first["actions"]] == ["delete", "create"]
    assert first["actions"][0]["resourceId"] == "MedicationRequest/draft-alendronate"
    assert first["actions"][1]["resource"]["medicationCodeableConcept"]["coding"][0]["code"] == "905024"
    kinds = [a["type"] for a in second["actions"]]
    assert kinds == ["delete", "create", "create"]
    dmab, calcium = second["actions"][1]["resource"], second["actions"][2]["resource"]
    assert dmab["medicationCodeableConcept"]["coding"][0]["code"] == "993452"
    assert dmab["dosageInstruction"][0]["timing"]["repeat"] == {"frequency": 1, "period": 6, "periodUnit": "mo"}
    assert calcium["resourceType"] == "ServiceRequest" and calcium["code"]["coding"][0]["code"] == "17861-6"
    assert [a["type"] for a in last["actions"]] == ["delete"] and not last["isRecommended"]


def test_renal_zoledronate_is_critical_and_risedronate_at_29_offers_the_prolia24_work_up_not_denosumab():
    zol = cards("c-safe-renal-zoledronate-egfr-34-critical", "order-sign")["C-SAFE-RENAL"]
    assert zol["indicator"] == "critical" and "contraindicated" in zol["summary"]
    assert zol["source"]["url"].endswith("setid=5a9b3737-9ce6-4a89-b76e-6aab79eba9cf")  # Reclast's own label
    ris = cards("c-safe-renal-risedronate-egfr-29", "order-sign")["C-SAFE-RENAL"]
    # kidney function below 30: no one-click denosumab, the CKD-MBD work-up and a referral first (PROLIA24)
    first = ris["suggestions"][0]
    assert "CKD-MBD work-up" in first["label"] and first["isRecommended"]
    created = [a["resource"] for a in actions(ris, "create")]
    assert not any(r["resourceType"] == "MedicationRequest" for r in created)
    codes = {r["code"]["coding"][0]["code"] for r in created}
    # review 14: the calcium and 25-OH vitamin D on file (within 90 days) are not ordered again
    assert {"2731-8", "1649-3", "306286007"} <= codes and not {"17861-6", "62292-8"} & codes
    assert ris["suggestions"][-1]["label"] == "Remove the draft risedronate order"


def test_renal_patient_view_on_active_drug_has_no_delete_and_names_the_therapy():
    card = cards("c-safe-renal-active-alendronate-egfr-34", "patient-view")["C-SAFE-RENAL"]
    assert "On alendronate since 2024-09-01" in card["detail"] and "Review the therapy" in card["detail"]
    assert not actions(card, "delete")


def test_context_only_draft_is_quiet_on_select_and_fires_on_sign():
    assert "C-SAFE-RENAL" not in cards("c-safe-renal-context-only-draft", "order-select")
    card = cards("c-safe-renal-context-only-draft", "order-sign")["C-SAFE-RENAL"]
    assert actions(card, "delete")[0]["resourceId"] == "MedicationRequest/draft-alendronate"


def test_hypocalcemia_card_holds_the_drug_and_rechecks_calcium():
    card = cards("c-safe-hypoca-denosumab-ca-8-4", "order-select")["C-SAFE-HYPOCA"]
    assert "Corrected calcium 8.4 mg/dL on 2025-05-01 (below 8.5 mg/dL)" in card["detail"]
    first = card["suggestions"][0]
    assert [a["type"] for a in first["actions"]] == ["delete", "create"]
    assert first["actions"][1]["resource"]["code"]["coding"][0]["code"] == "17861-6"
    # no denosumab alternative is offered to a patient with low calcium anywhere
    cond = cards("c-safe-hypoca-zoledronate-hypocalcemia-condition", "order-sign")["C-SAFE-HYPOCA"]
    assert "Hypocalcemia (E83.51) on 2025-04-20" in cond["detail"]


def test_vitamin_d_low_order_card_replaces_the_injection_with_repletion():
    card = cards("c-vitd-low-zoledronate-25ohd-19", "order-sign")["C-VITD-LOW"]
    assert card["indicator"] == "warning"
    assert "25-OH vitamin D 19 ng/mL on 2025-05-01 (below 20 ng/mL)" in card["detail"]
    [suggestion] = card["suggestions"]
    delete, create = suggestion["actions"]
    assert delete["resourceId"] == "MedicationRequest/draft-zoledronate"
    assert create["resource"]["medicationCodeableConcept"]["coding"][0]["code"] == "2418"


def test_denosumab_ckd_card_carries_the_whole_prolia24_plan():
    card = cards("c-safe-dmab-ckd-egfr-29", "order-select")["C-SAFE-DMAB-CKD"]
    assert card["indicator"] == "warning"  # 15-29
    hold, keep = card["suggestions"]
    assert hold["isRecommended"] and hold["actions"][0] == {
        "type": "delete", "description": "Remove the draft denosumab order", "resourceId": "MedicationRequest/draft-denosumab"}
    work_up = {a["resource"]["code"]["coding"][0]["code"] for a in hold["actions"][1:]}
    assert work_up == {"2731-8", "1649-3", "306286007"}  # calcium, 25-OH D within 90 days: not again (review 14)
    timings = [a["resource"].get("occurrenceTiming") for a in keep["actions"]]
    assert {"repeat": {"count": 4, "frequency": 1, "period": 1, "periodUnit": "wk"}} in timings
    assert "weekly for the first month, then monthly" in card["detail"] and "CKD-MBD" in card["detail"]
    dialysis = cards("c-safe-dmab-ckd-dialysis-no-egfr", "order-select")["C-SAFE-DMAB-CKD"]
    assert dialysis["indicator"] == "critical"  # dialysis: critical (second-pass 2)
    assert "Dialysis (Z99.2) on 2023-03-01" in dialysis["detail"]
    assert "Patient declined" not in [r["display"] for r in dialysis.get("overrideReasons", ())]


def test_esophageal_card_offers_denosumab_and_zoledronate_as_exclusive_alternatives():
    card = cards("c-safe-esoph-alendronate-achalasia", "order-select")["C-SAFE-ESOPH"]
    created = [[a["resource"]["medicationCodeableConcept"]["coding"][0]["code"] for a in s["actions"]
                if a["type"] == "create" and a["resource"]["resourceType"] == "MedicationRequest"]
               for s in card["suggestions"]]
    assert created == [["993452"], ["705824"], []]
    assert "Esophageal disorder (K22.0) on 2019-06-01" in card["detail"]
    bypass = cards("c-safe-esoph-risedronate-gastric-bypass", "order-select")["C-SAFE-ESOPH"]
    assert "Bariatric surgery (442338001) on 2016-02-11" in bypass["detail"]


def test_romosozumab_after_mi_suggests_teriparatide_or_abaloparatide_separately():
    card = cards("c-safe-romo-cv-mi-11-months", "order-select")["C-SAFE-ROMO-CV"]
    assert card["indicator"] == "critical"
    assert "Myocardial infarction (I21.9) on 2024-07-01" in card["detail"]
    pairs = [[a["type"] for a in s["actions"]] for s in card["suggestions"]]
    assert pairs == [["delete", "create"], ["delete", "create"], ["delete"]]
    made = [s["actions"][1]["resource"]["medicationCodeableConcept"]["coding"][0]["code"] for s in card["suggestions"][:2]]
    assert made == ["1435115", "1921082"]
    assert card["suggestions"][0]["isRecommended"] and not card["suggestions"][1]["isRecommended"]


def test_romosozumab_limit_counts_administrations():
    assert "13 monthly doses given" in cards("c-safe-romo-limit-13-doses-given", "patient-view")["C-SAFE-ROMO-LIMIT"]["detail"]
    card = cards("c-safe-romo-limit-ordering-13th-dose", "order-sign")["C-SAFE-ROMO-LIMIT"]
    assert "12 monthly doses given" in card["detail"]
    assert card["suggestions"][0]["actions"][0]["resourceId"] == "MedicationRequest/draft-romosozumab"


def test_pth_limit_sums_both_agents():
    card = cards("c-safe-pth-limit-teriparatide-then-abaloparatide-25-months", "patient-view")["C-SAFE-PTH-LIMIT"]
    assert "Cumulative teriparatide + abaloparatide exposure 25.0 months" in card["detail"]
    assert [s["actions"][0]["type"] for s in card["suggestions"]] == ["create", "create"]  # start, no draft


def test_anabolic_contraindication_names_the_condition():
    card = cards("c-safe-anabolic-contra-abaloparatide-bone-metastases", "order-sign")["C-SAFE-ANABOLIC-CONTRA"]
    assert "Bone metastases / skeletal malignancy (C79.51) on 2024-02-01" in card["detail"]


# ---------------------------------------------------------------------------
# Edge cases built in code
# ---------------------------------------------------------------------------

def _record(*, labs=(), conditions=(), meds=(), drafts=(), selections=None, gender="female", settings=S):
    return build_record({
        "patient": {"resourceType": "Patient", "id": "p", "gender": gender, "birthDate": "1950-01-01"},
        "observations": {"resourceType": "Bundle", "entry": [{"resource": r} for r in labs]},
        "conditions": {"resourceType": "Bundle", "entry": [{"resource": r} for r in conditions]},
        "medicationRequests": {"resourceType": "Bundle", "entry": [{"resource": r} for r in meds
                                                                    if r["resourceType"] == "MedicationRequest"]},
        "medicationAdministrations": {"resourceType": "Bundle", "entry": [
            {"resource": r} for r in meds if r["resourceType"] == "MedicationAdministration"]},
    }, drafts=list(drafts), today=TODAY, selections=selections, settings=settings)


def _lab(code, value, unit, date="2025-05-01", oid=None):
    return {"resourceType": "Observation", "id": oid or f"o{code}", "status": "final", "code": coding(t.LOINC, code),
            "effectiveDateTime": date, "valueQuantity": {"value": value, "unit": unit}}


def _draft(did, concept):
    res = {"resourceType": "MedicationRequest", "status": "draft", "intent": "order", "medicationCodeableConcept": concept}
    if did:
        res["id"] = did
    return res


def _codes(hook, record, settings=S):
    return {c["source"]["topic"]["code"]: c for c in engine.evaluate(hook, record, TODAY, settings, strict=True)}


ALENDRONATE = coding(t.RXNORM, "904431")


def test_unknown_egfr_is_not_low():
    record = _record(drafts=[_draft("d1", ALENDRONATE)])
    assert "C-SAFE-RENAL" not in _codes("order-sign", record)


def test_stale_egfr_is_unknown_and_a_low_one_asks_for_a_recheck():
    """Issue 14 changed this: an old eGFR is still unknown, never "low" (no verdict, nothing
    deleted), but an old LOW one no longer vanishes: the card asks for a recheck."""
    record = _record(labs=[_lab("98979-8", 20, "mL/min/{1.73_m2}", date="2024-01-01")],
                     drafts=[_draft("d1", ALENDRONATE)])
    card = _codes("order-sign", record)["C-SAFE-RENAL"]
    assert card["indicator"] == "warning" and "needs a kidney recheck" in card["summary"]
    assert "not recommended" not in card["summary"]
    actions = [a for s in card["suggestions"] for a in s["actions"]]
    assert [a["type"] for a in actions] == ["create"] and actions[0]["resource"]["code"]["coding"][0]["code"] == "98979-8"
    normal = _record(labs=[_lab("98979-8", 60, "mL/min/{1.73_m2}", date="2024-01-01")],
                     drafts=[_draft("d1", ALENDRONATE)])
    assert "C-SAFE-RENAL" not in _codes("order-sign", normal)  # an old normal value: nothing to recheck here


def test_threshold_comes_from_settings():
    record_args = dict(labs=[_lab("98979-8", 36, "mL/min/{1.73_m2}")], drafts=[_draft("d1", ALENDRONATE)])
    assert "C-SAFE-RENAL" not in _codes("order-sign", _record(**record_args))
    strict = dataclasses.replace(S, egfr_alendronate_min=40)
    assert "C-SAFE-RENAL" in _codes("order-sign", _record(settings=strict, **record_args), strict)


def test_drug_recognised_by_ingredient_code_and_by_brand_name():
    egfr = [_lab("98979-8", 20, "mL/min/{1.73_m2}")]
    for concept in (coding(t.RXNORM, "46041"), coding(t.RXNORM, "904433"), {"text": "FOSAMAX 70 mg tablet"}):
        assert "C-SAFE-RENAL" in _codes("order-sign", _record(labs=egfr, drafts=[_draft("d1", concept)]))
    for concept in (coding(t.RXNORM, "115264"), {"text": "Boniva 150 mg"}):  # ibandronate: SAFE-2
        card = _codes("order-sign", _record(labs=egfr, drafts=[_draft("d1", concept)]))["C-SAFE-RENAL"]
        assert "below 30 for ibandronate" in card["detail"]


def test_draft_without_medication_or_id_never_errors():
    egfr = [_lab("98979-8", 20, "mL/min/{1.73_m2}")]
    blank = {"resourceType": "MedicationRequest", "id": "request-123", "status": "draft", "intent": "proposal"}
    assert _codes("order-sign", _record(labs=egfr, drafts=[blank])) == {}
    # a draft with no id still gets its card, with nothing to delete
    card = _codes("order-sign", _record(labs=egfr, drafts=[_draft(None, ALENDRONATE)]))["C-SAFE-RENAL"]
    assert "suggestions" not in card and "draft without id" in card["detail"]


def test_oncology_products_skip_dosing_checks_but_count_as_duplicates():
    xgeva = {"text": "Xgeva (denosumab) 120 mg/1.7 mL injection"}
    low_ca = [_lab("17861-6", 7.9, "mg/dL")]
    assert "C-SAFE-HYPOCA" not in _codes("order-sign", _record(labs=low_ca, drafts=[_draft("x", xgeva)]))
    on_bp = [{"resourceType": "MedicationRequest", "id": "a", "status": "active", "intent": "order",
              "medicationCodeableConcept": ALENDRONATE, "authoredOn": "2024-01-01"}]
    assert "C-DUP-ANTIRES" in _codes("order-sign", _record(meds=on_bp, drafts=[_draft("x", xgeva)]))


def test_ordering_denosumab_on_a_bisphosphonate_is_never_a_transition():
    meds = [{"resourceType": "MedicationAdministration", "id": "m1", "status": "completed",
             "medicationCodeableConcept": coding(t.RXNORM, "993452"), "effectiveDateTime": "2024-01-01"},
            {"resourceType": "MedicationRequest", "id": "a", "status": "active", "intent": "order",
             "medicationCodeableConcept": ALENDRONATE, "authoredOn": "2024-07-01"}]
    record = _record(meds=meds, drafts=[_draft("d", coding(t.RXNORM, "993452"))])
    assert "C-DUP-ANTIRES" in _codes("order-select", record)
    # two antiresorptives in the same order session are a duplicate too
    both = _record(drafts=[_draft("d", coding(t.RXNORM, "993452")), _draft("r", coding(t.RXNORM, "1490065"))],
                   selections=["MedicationRequest/r"])
    card = _codes("order-select", both)["C-DUP-ANTIRES"]
    assert actions(card, "delete")[0]["resourceId"] == "MedicationRequest/r"


def test_anabolic_with_antiresorptive_is_not_a_duplicate():
    meds = [{"resourceType": "MedicationRequest", "id": "a", "status": "active", "intent": "order",
             "medicationCodeableConcept": ALENDRONATE, "authoredOn": "2024-07-01"}]
    record = _record(meds=meds, drafts=[_draft("t", coding(t.RXNORM, "1435115"))])
    assert "C-DUP-ANTIRES" not in _codes("order-sign", record)  # SAFE-16 is a different card


def test_romosozumab_in_a_man_after_stroke_offers_the_pth_analogs_on_one_card():
    stroke = [{"resourceType": "Condition", "id": "c", "code": coding(t.ICD10CM, "I63.9"), "onsetDateTime": "2025-01-01"}]
    record = _record(conditions=stroke, drafts=[_draft("r", {"text": "romosozumab-aqqg"})], gender="male")
    got = _codes("order-sign", record)
    card = got["C-SAFE-ROMO-CV"]
    # abaloparatide is approved for men too (Tymlos label, indication 1.2, openFDA)
    assert [s["label"] for s in card["suggestions"]] == ["Order teriparatide 20 mcg daily instead",
                                                        "Order abaloparatide 80 mcg daily instead",
                                                        "Remove the draft romosozumab order"]
    assert "Not approved for men" in card["detail"]
    assert "C-SAFE-ANABOLIC-CONTRA" not in got  # one card removes the draft and offers the PTH analogs


def test_no_pth_alternative_once_the_pth_limit_is_used_up():
    mi = [{"resourceType": "Condition", "id": "c", "code": coding(t.ICD10CM, "I21.9"), "onsetDateTime": "2025-01-01"}]
    tptd = [{"resourceType": "MedicationRequest", "id": "tp", "status": "completed", "intent": "order",
             "medicationCodeableConcept": coding(t.RXNORM, "1435115"), "authoredOn": "2021-01-01",
             "dosageInstruction": [{"timing": {"repeat": {"boundsPeriod": {"start": "2021-01-01", "end": "2023-02-01"}}}}]}]
    card = _codes("order-sign", _record(conditions=mi, meds=tptd, drafts=[_draft("r", {"text": "Evenity"})]))
    assert [s["label"] for s in card["C-SAFE-ROMO-CV"]["suggestions"]] == ["Remove the draft romosozumab order"]


# ---------------------------------------------------------------------------
# Through HTTP, the way the public sandbox sends it: draftOrders Bundle without `type`
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("hook", ORDER_HOOKS)
def test_draft_orders_bundle_without_type_through_http(client, hook):
    bundle = fx.load_patient("c-safe-renal-alendronate-egfr-34", today=HTTP_TODAY)
    body = hook_body(bundle, hook)
    del body["context"]["draftOrders"]["type"]
    resp = client.post(f"/cds-services/{SERVICE_IDS[hook]}", json=body)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    card = {c["source"]["topic"]["code"]: c for c in resp.get_json()["cards"]}["C-SAFE-RENAL"]
    assert card["uuid"]
    delete = [a for s in card["suggestions"] for a in s["actions"] if a["type"] == "delete"]
    assert delete and all(a["resourceId"] == "MedicationRequest/draft-alendronate" for a in delete)


@pytest.mark.parametrize("hook", ORDER_HOOKS)
def test_rx_view_blank_draft_without_type_through_http_gives_no_card(client, hook):
    bundle = fx.load_patient("c-safe-rx-view-draft-without-medication", today=HTTP_TODAY)
    pid = bundle["entry"][0]["resource"]["id"]
    blank = {"resourceType": "MedicationRequest", "id": "request-123", "status": "draft", "intent": "proposal",
             "subject": {"reference": f"Patient/{pid}"}}
    context = {"patientId": pid, "userId": "Practitioner/example",
               "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": blank}]}}
    if hook == "order-select":
        context["selections"] = ["MedicationRequest/request-123"]
    body = {"hookInstance": str(uuid.uuid4()), "hook": hook, "context": context,
            "prefetch": fx.prefetch_from_bundle(bundle)}
    resp = client.post(f"/cds-services/{SERVICE_IDS[hook]}", json=body)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    fired = {c["source"]["topic"]["code"] for c in resp.get_json()["cards"]}
    assert not {c for c in fired if c.startswith(("C-SAFE-", "C-DUP-", "C-VITD-"))}, fired


# ---------------------------------------------------------------------------
# Romosozumab and a recent MI or stroke, through the Flask app (review cv8).
# Brief SAFE-8; second-pass 2; Evenity label, boxed warning: "should not be initiated in
# patients who have had a myocardial infarction or stroke within the preceding year ...
# If a patient experiences a myocardial infarction or stroke during therapy, EVENITY
# should be discontinued."
# ---------------------------------------------------------------------------

def _days_ago(days):
    return (HTTP_TODAY - dt.timedelta(days=days)).isoformat()


def _post(client, hook, bundle):
    resp = client.post(f"/cds-services/{SERVICE_IDS[hook]}", json=hook_body(bundle, hook))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return {c["source"]["topic"]["code"]: c for c in resp.get_json()["cards"]}


def _recode_condition(bundle, system, code, **dates):
    """The fixture's one Condition, coded `system|code` and dated by `dates` alone."""
    cond = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Condition")
    cond["code"] = {"coding": [{"system": system, "code": code}]}
    for key in ("onsetDateTime", "recordedDate"):
        cond.pop(key, None)
    cond.update(dates)
    return bundle


# Codes the review found missing; each is in condition-mi or condition-stroke with its source.
CV_CODES = [
    (t.SNOMED, "57054005"),    # acute myocardial infarction (VSAC 2.16.840.1.113883.3.526.3.403)
    (t.SNOMED, "401303003"),   # acute STEMI (same)
    (t.SNOMED, "401314000"),   # acute NSTEMI (same)
    (t.SNOMED, "1755008"),     # old myocardial infarction (V?, OHDSI concept set)
    (t.SNOMED, "399211009"),   # history of myocardial infarction (Synthea)
    (t.SNOMED, "422504002"),   # ischemic stroke (VSAC Ischemic Stroke)
    (t.SNOMED, "432504007"),   # cerebral infarction (V?)
    (t.SNOMED, "274100004"),   # cerebral hemorrhage (VSAC Hemorrhagic Stroke)
    (t.ICD10CM, "I25.2"),      # old myocardial infarction
    (t.ICD10CM, "I60.9"),      # nontraumatic subarachnoid hemorrhage (VSAC Hemorrhagic Stroke)
    (t.ICD10CM, "I23.3"),      # complication within 28 days of an MI
    (t.ICD10CM, "I24.1"),      # Dressler's syndrome (post-MI syndrome)
]


@pytest.mark.parametrize("system,code", CV_CODES, ids=[c for _, c in CV_CODES])
def test_romosozumab_order_after_any_coded_mi_or_stroke_is_critical(client, system, code):
    bundle = _recode_condition(fx.load_patient("c-safe-romo-cv-mi-11-months", today=HTTP_TODAY),
                               system, code, onsetDateTime=_days_ago(210))
    card = _post(client, "order-sign", bundle)["C-SAFE-ROMO-CV"]
    assert card["indicator"] == "critical" and f"({code}) on {_days_ago(210)}" in card["detail"]
    assert actions(card, "delete")[0]["resourceId"] == "MedicationRequest/draft-romosozumab"


@pytest.mark.parametrize("system,code", CV_CODES, ids=[c for _, c in CV_CODES])
def test_romosozumab_order_quiet_when_the_same_code_is_older_than_a_year(client, system, code):
    bundle = _recode_condition(fx.load_patient("c-safe-romo-cv-mi-11-months", today=HTTP_TODAY),
                               system, code, onsetDateTime=_days_ago(400))
    assert "C-SAFE-ROMO-CV" not in _post(client, "order-sign", bundle)


def test_an_old_mi_code_is_dated_by_its_onset_else_by_when_it_was_recorded(client):
    """An old-MI / history-of-MI code says when the MI was by its onset: onset 3 years ago,
    recorded last month is an old MI (quiet). With no onset, the day it was recorded is
    all there is: within the year it counts (the MI may be recent), and the card says the MI's
    own date is not on record (review 10 M4)."""
    name = "c-safe-romo-cv-mi-11-months"
    old = _recode_condition(fx.load_patient(name, today=HTTP_TODAY), t.ICD10CM, "I25.2",
                            onsetDateTime=_days_ago(3 * 365), recordedDate=_days_ago(30))
    assert "C-SAFE-ROMO-CV" not in _post(client, "order-sign", old)
    recorded = _recode_condition(fx.load_patient(name, today=HTTP_TODAY), t.SNOMED, "399211009",
                                 recordedDate=_days_ago(30))
    assert (f"(399211009): the date of the MI is not on record (recorded on {_days_ago(30)})"
            in _post(client, "order-sign", recorded)["C-SAFE-ROMO-CV"]["detail"])


def _anabolic_offer(client, condition=None):
    bundle = fx.load_patient("c-tx-anabolic-t-minus-3-1", today=HTTP_TODAY)
    if condition:
        pid = bundle["entry"][0]["resource"]["id"]
        bundle["entry"].append({"resource": dict(condition, resourceType="Condition", id="cv8-cv",
                                                 subject={"reference": f"Patient/{pid}"})})
    card = _post(client, "patient-view", bundle)["C-TX-ANABOLIC"]
    offered = [a["resource"].get("medicationCodeableConcept", {}).get("text", "")
               for a in actions(card, "create") if a["resource"]["resourceType"] == "MedicationRequest"]
    return card, offered


def test_no_one_click_romosozumab_after_a_stemi_coded_in_snomed(client):
    _, offered = _anabolic_offer(client)
    assert any("romosozumab" in text.lower() for text in offered)  # the control: offered without the MI
    stemi = {"code": coding(t.SNOMED, "401303003"), "onsetDateTime": _days_ago(210)}
    card, offered = _anabolic_offer(client, stemi)
    assert not any("romosozumab" in text.lower() for text in offered), offered
    assert "Romosozumab not suggested: Myocardial infarction (401303003)" in card["detail"]
    _, offered = _anabolic_offer(client, dict(stemi, onsetDateTime=_days_ago(400)))
    assert any("romosozumab" in text.lower() for text in offered)


def _on_romosozumab(mi_days_ago, started_days_ago=35, dose_days_ago=30):
    """Active romosozumab (ordered `started_days_ago`, one dose `dose_days_ago`) and an
    NSTEMI (I21.4) `mi_days_ago`, on the fixture of an MI during a course."""
    bundle = fx.load_patient("c-safe-romo-cv-mi-during-romosozumab", today=HTTP_TODAY)
    kept = []
    for entry in bundle["entry"]:
        r = entry["resource"]
        text = (r.get("medicationCodeableConcept") or {}).get("text", "")
        if r["resourceType"] == "MedicationAdministration" and "romosozumab" in text:
            continue
        if r["resourceType"] == "MedicationRequest" and "romosozumab" in text:
            r["authoredOn"] = _days_ago(started_days_ago)
        if r["resourceType"] == "Condition":
            r["onsetDateTime"] = _days_ago(mi_days_ago)
        kept.append(entry)
    pid = kept[0]["resource"]["id"]
    kept.append({"resource": {"resourceType": "MedicationAdministration", "id": "cv8-dose", "status": "completed",
                              "medicationCodeableConcept": {"text": "Evenity (romosozumab-aqqg) 105 mg/1.17 mL"},
                              "effectiveDateTime": _days_ago(dose_days_ago),
                              "subject": {"reference": f"Patient/{pid}"}}})
    bundle["entry"] = kept
    return bundle


def test_romosozumab_started_within_a_year_after_an_mi_warns_on_patient_view(client):
    """Review cv8: started 35 days ago, 55 days after an NSTEMI (I21.4, 90 days ago). The
    label says not to start it within a year of an MI; the card says so, and to stop."""
    card = _post(client, "patient-view", _on_romosozumab(mi_days_ago=90))["C-SAFE-ROMO-CV"]
    assert card["indicator"] == "critical"
    assert "started within 12 months after a myocardial infarction or stroke" in card["detail"]
    assert f"Myocardial infarction (I21.4) on {_days_ago(90)}" in card["detail"]
    assert "give no further doses" in card["detail"] and not actions(card, "delete")


def test_an_mi_during_the_course_still_says_it_occurred_during_it(client):
    card = _post(client, "patient-view", _on_romosozumab(mi_days_ago=10))["C-SAFE-ROMO-CV"]
    assert "occurred during the romosozumab course" in card["detail"]
    assert "started within 12 months after" not in card["detail"]


def test_romosozumab_started_more_than_a_year_after_the_mi_is_quiet(client):
    assert "C-SAFE-ROMO-CV" not in _post(client, "patient-view", _on_romosozumab(mi_days_ago=400))


EVENITY = {"text": "Evenity (romosozumab-aqqg) 105 mg/1.17 mL prefilled syringe"}


def _romo_course_as(record_of_course):
    """The 13th-dose fixture with its romosozumab course (an active order and 12
    administrations) replaced by `record_of_course` (resources); the draft stays."""
    bundle = fx.load_patient("c-safe-romo-limit-ordering-13th-dose", today=HTTP_TODAY)
    pid = bundle["entry"][0]["resource"]["id"]
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["resourceType"] not in (
        "MedicationAdministration", "MedicationStatement") and not (
        e["resource"]["resourceType"] == "MedicationRequest" and e["resource"]["status"] != "draft")]
    bundle["entry"] += [{"resource": dict(r, subject={"reference": f"Patient/{pid}"})} for r in record_of_course]
    return bundle


def _statement(months, ended_days_ago=60):
    start = HTTP_TODAY - dt.timedelta(days=ended_days_ago + round(months * 30.4375))
    return {"resourceType": "MedicationStatement", "id": "cv8-stmt", "status": "completed",
            "medicationCodeableConcept": EVENITY,
            "effectivePeriod": {"start": start.isoformat(), "end": _days_ago(ended_days_ago)}}


def _request(start_days_ago=425, end_days_ago=61, repeats=11):
    return {"resourceType": "MedicationRequest", "id": "cv8-rx", "status": "completed", "intent": "order",
            "medicationCodeableConcept": EVENITY, "authoredOn": _days_ago(start_days_ago),
            "dispenseRequest": {"validityPeriod": {"start": _days_ago(start_days_ago), "end": _days_ago(end_days_ago)},
                                "numberOfRepeatsAllowed": repeats}}


# Ended 4 months ago: past C-ANABOLIC-FOLLOW-ON's 3 months of grace.
@pytest.mark.parametrize("course", [[_statement(12, ended_days_ago=120)], [_request(485, 121)]],
                         ids=["statement-12-months", "request-12-fills"])
def test_a_finished_course_on_a_statement_or_an_order_limits_romosozumab_as_the_follow_on_rule_reads_it(client, course):
    """Review cv8: C-ANABOLIC-FOLLOW-ON read a completed 12-month course (a MedicationStatement's
    effectivePeriod, an order's validityPeriod with 11 repeats) as finished, while
    C-SAFE-ROMO-LIMIT let a 13th dose be signed (the statement read as one dose, the order as
    11.96 months). One reading of the course (facts.romosozumab_course) serves both."""
    bundle = _romo_course_as(course)
    card = _post(client, "order-sign", bundle)["C-SAFE-ROMO-LIMIT"]
    assert "(no administrations on record: about 12 monthly doses)" in card["detail"]
    assert card["suggestions"][0]["actions"][0]["resourceId"] == "MedicationRequest/draft-romosozumab"
    assert "C-ANABOLIC-FOLLOW-ON" in _post(client, "patient-view", bundle)


def test_a_six_month_statement_does_not_limit_romosozumab(client):
    assert "C-SAFE-ROMO-LIMIT" not in _post(client, "order-sign", _romo_course_as([_statement(6)]))
    assert "C-SAFE-ROMO-LIMIT" not in _post(client, "order-sign", _romo_course_as([_request(start_days_ago=240)]))
