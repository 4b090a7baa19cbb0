import shutil

import pytest

from cds_service import card_render as cr
from cds_service import fixtures
from cds_service.rules.base import Action, Finding, Suggestion
from tests.conftest import TODAY

# Values for every placeholder the shipped templates use.
VARIABLES = {"population": "a postmenopausal woman", "recommendation": "ACP 2023 Rec 1a", "labs_note": "labs ok",
             "patient_instruction": "Take on waking.", "missing": "calcium and vitamin D",
             # follow_up / lifestyle cards
             "last_dose": "2024-11-29", "grace_end": "2025-06-01", "days_since": "220",
             "zoledronate_date": "2025-06-01", "dose_date": "2025-06-01", "ended": "ended 2025-02-01", "topics": "stop smoking"}
# C-EXERCISE / C-FALLS (cds_service.rules.exercise)
VARIABLES.update({"focus": " with spinal precautions", "precautions": "Spine-sparing movement.",
                  "supervision": "Supervised.", "referral_reason": "vertebral fracture",
                  "therapist_note": "Programme.", "assessment": "Order one.", "min_age": "65"})
# treatment cards (C-TX-BP, C-TX-DMAB-ALT, C-TX-ANABOLIC, C-HOLIDAY, C-SECONDARY-EVAL)
VARIABLES.update({"risk_text": "high fracture risk", "zoledronate_note": "zoledronic acid", "ckd_note": "",
                  "options_text": "teriparatide 20 mcg SC daily", "alternatives": "denosumab",
                  "re_eval_years": "2", "reason": "This patient is a man with osteoporosis.",
                  "subject": "Man with osteoporosis", "panel_note": "Drop the tests already done recently."})
# C-VITD-LOW, C-MON-DXA-DUE, C-MON-ONTX, C-SCREEN-DXA, C-LAB-BASELINE
VARIABLES.update({"level": "deficient", "headline": "replete", "status": "below 20 ng/mL", "target": "30",
             "maintenance_start": "2025-07-27", "why": "last DXA on 2023-01-01", "due": "since 2025-01-01",
             "interval": "2 years", "population": "on osteoporosis treatment", "review": "",
             "next_dxa": "Next DXA due on or after 2026-01-01.", "checks": "- **Refill gap:** ask.", "drugs": "alendronate", "advice": "USPSTF 2018", "max_age": "12"})
# C-MASSAGE-SAFETY, C-MON-DXA-DUP
VARIABLES.update({"headline": "patient has osteopenia: gentle techniques only", "condition": "osteopenia",
             "clearance": "Physician clearance after a recent fracture.", "modifiers": "- none",
             "fresh_fracture_weeks": "12", "previous_dxa": "2024-07-01", "months_since": "11",
             "duplicate_months": "12"})
# order-safety cards
VARIABLES.update({"drug": "Alendronate", "drug_name": "alendronate", "verdict": "not recommended", "renal_limit": "35", "label_text": "Fosamax label",
             "situation": "Alendronate is being ordered.", "advice": "Consider denosumab.", "window": "12",
             "when": "in the past 12 months",
             "max_doses": "12", "max_months": "24",
             "kidney_status": "Kidney function is below the labelled limit for this drug"})
# second pass (new cards and new placeholders)
VARIABLES.update({"kidney": "eGFR 28 mL/min/1.73m2", "action": "suggest calcium and vitamin D", "kidney_note": "",
                  "rehab": "Fear of falling: ask.", "order_kind": "Massage", "order_word": "massage",
                  "problem": "not approved for men", "drug_a": "alendronate", "drug_b": "denosumab",
                  "brand": "Fosamax", "months": "9", "days": "120", "earliest": "2025-09-01",
                  "why": "a new fracture", "switch": "An anabolic agent.", "complication": "osteonecrosis of the jaw",
                  "plan": "PROLIA24 plan.", "severity": "Dialysis.", "dose": "10 mg/day", "risk": "high",
                  "treatment": "Treat.", "dxa_text": "No DXA.", "cleared": "the fracture is cleared", "schedule": "every 6 months",
                  "next_step": "hold it and refer to a bone specialist", "intro": "Fragile bones.",
                  "technique": "- Avoid: deep tissue massage.", "supplements": "Calcium and vitamin D."})
# review of the second pass
VARIABLES.update({"kidney_problem": "kidney function (eGFR 28 mL/min/1.73m2) below 35 mL/min",
                  "oral_bp_status": "nothing on record against an oral bisphosphonate",
                  "start": "start alendronate or denosumab", "suggested": "alendronate 70 mg weekly",
                  "first_choice": "alendronate 70 mg", "risedronate_label": " (alternative)"})
# C-TX-BP with an eGFR known only as a bound ("<35")
VARIABLES.update({"once": " once an exact eGFR is 30+", "order_note": "No order yet.", "risk_level": "high"})
# C-TX-DMAB-ALT with a 25-OH vitamin D below 20 ng/mL (orders say the first dose waits for repletion)
VARIABLES.update({"vitamin_d_first": " First dose only once 25-OH vitamin D is repleted.",
                  "vitamin_d_label": "; first dose after vitamin D repletion"})
# C-TX-BP / C-TX-DMAB-ALT: what is on board, or an anabolic course just over (review 13)
VARIABLES.update({"drug_status": "no bone drug", "treatment_status": "no osteoporosis treatment"})
# C-SAFE-HYPOCA, one draft or several (review 8)
VARIABLES.update({"being": "is being", "labels_say": "label says", "orders": "order",
                  "low_what": "corrected calcium below the lower limit"})
# C-DMAB-DUE / -OVERDUE / -STOP / C-ANABOLIC-FOLLOW-ON: the next step, a low calcium, the PROLIA24 text (review 14)
VARIABLES.update({"next_step": "give the next 60 mg dose by 2025-06-01", "calcium_note": "", "ckd_plan": "",
                  "work_up": "**Suggested:** the CKD-MBD labs."})
# C-DMAB-OVERDUE / C-DMAB-DUE anabolic-unstudied: the dose waits for a low calcium (review 15)
VARIABLES.update({"now": " now", "due_by": "by 2025-06-01", "after_calcium": ""})


@pytest.mark.parametrize("card_id", cr.card_ids())
def test_every_card_template_renders_valid_fhir(card_id):
    card = cr.render(Finding(card_id, facts=("Lumbar spine T-score -2.7 on 2025-02-01",), variables=VARIABLES,
                             delete_draft="ServiceRequest/d1"),
                     patient_id="p1", today=TODAY, strict=True)
    assert len(card["summary"]) < 140
    assert card["indicator"] in ("info", "warning", "critical")
    assert card["source"]["topic"] == {"system": cr.RULES_SYSTEM, "code": card_id,
                                       "display": card["source"]["topic"]["display"]}
    assert card["source"]["url"].startswith("https://")
    assert "Lumbar spine T-score -2.7 on 2025-02-01" in card["detail"]
    assert all(r["system"] == cr.OVERRIDE_REASON_SYSTEM and r["display"] for r in card["overrideReasons"])
    if cr.load_card(card_id).get("suggestions"):  # an info card may carry advice only (C-HOLIDAY)
        assert card["selectionBehavior"] in ("at-most-one", "any")
    for s in card.get("suggestions", ()):
        for a in s["actions"]:
            if a["type"] == "delete":
                assert a["resourceId"] == "ServiceRequest/d1"
                continue
            res = a["resource"]
            assert res["subject"] == {"reference": "Patient/p1"}
            assert res["status"] == "draft" and res["authoredOn"] == TODAY.isoformat()
            assert "{{" not in str(res)


def test_missing_variable_is_an_error_in_strict_mode_and_dropped_otherwise():
    with pytest.raises(cr.CardTemplateError):
        cr.render(Finding("C-TX-BP"), patient_id="p", today=TODAY, strict=True)
    assert cr.render(Finding("C-TX-BP"), patient_id="p", today=TODAY) is None


def test_suggestion_selection_indicator_override_and_built_actions():
    built = Suggestion("Remove the draft", (Action("delete", "Delete draft", resource_id=("MedicationRequest/d1",)),))
    card = cr.render(Finding("C-SUPP-CAVD", variables=VARIABLES, suggestions=("vitamin-d",), indicator="warning",
                             extra_suggestions=(built,)), patient_id="p", today=TODAY, strict=True)
    assert card["indicator"] == "warning"
    assert [s["label"] for s in card["suggestions"]] == ["Order vitamin D3 1000 IU daily", "Remove the draft"]
    assert card["suggestions"][1]["actions"][0] == {"type": "delete", "description": "Delete draft",
                                                    "resourceId": "MedicationRequest/d1"}


def test_invalid_resource_is_rejected():
    with pytest.raises(cr.CardTemplateError):
        cr.validate_resource({"resourceType": "MedicationRequest", "status": "draft"})
    bad = Suggestion("x", (Action("create", "bad", resource={"resourceType": "MedicationRequest"}),))
    card = cr.render(Finding("C-SUPP-CAVD", variables=VARIABLES, suggestions=(), extra_suggestions=(bad,)),
                     patient_id="p", today=TODAY)
    assert "suggestions" not in card


def test_unknown_card_id():
    with pytest.raises(cr.CardTemplateError):
        cr.render(Finding("C-NOPE"), patient_id="p", today=TODAY, strict=True)


def test_a_changed_template_is_validated_again(tmp_path, monkeypatch):
    """Validation answers are remembered by the resource's content, so a
    template edited after its orders were validated (a new release, a
    site's copy) is checked anew, never passed on the old answer."""
    shutil.copytree(cr.data_dir() / "cards", tmp_path / "cards")
    monkeypatch.setenv("CDS_DATA_DIR", str(tmp_path))
    cr.load_card.cache_clear()
    finding = Finding("C-SUPP-CAVD", variables=VARIABLES, suggestions=("vitamin-d",))
    try:
        card = cr.render(finding, patient_id="p", today=TODAY, strict=True)
        assert card["suggestions"][0]["actions"][0]["resource"]["dosageInstruction"][0]["timing"]["repeat"][
            "frequency"] == 1
        path = tmp_path / "cards" / "C-SUPP-CAVD.yaml"
        path.write_text(path.read_text().replace("{frequency: 1,", "{frequency: daily,"))
        cr.load_card.cache_clear()
        with pytest.raises(cr.CardTemplateError, match="frequency"):
            cr.render(finding, patient_id="p", today=TODAY, strict=True)
        assert "suggestions" not in cr.render(finding, patient_id="p", today=TODAY)
    finally:
        monkeypatch.delenv("CDS_DATA_DIR")
        cr.load_card.cache_clear()


def test_compiled_templates_fill_as_walking_them_does():
    """Suggested orders are filled from a compiled copy of each template
    (for speed): the same resource as filling every string, and a new tree
    each time, so changing one never changes the template or the next card."""
    for card_id in cr.card_ids():
        for name, template in (cr.load_card(card_id).get("resources") or {}).items():
            walked = cr._fill_tree(template, VARIABLES)
            filled = cr._filled_resource(template, VARIABLES)
            assert filled == walked and repr(filled) == repr(walked), (card_id, name)
            filled["resourceType"] = "Changed"
            filled.setdefault("code", {})["text"] = "changed"
            assert cr._filled_resource(template, VARIABLES) == walked


@pytest.mark.parametrize("template", [
    {"resourceType": "ServiceRequest", "code": {"coding": [{"code": "x"}]}, "note": [{"text": 'says "hi"'}]},
    {"resourceType": "ServiceRequest", "code": {"coding": ({"code": "x"},)}},  # a tuple stays a tuple
])
def test_prepare_resource_fills_a_copy_and_leaves_the_template_alone(template):
    before = repr(template)
    out = cr.prepare_resource(template, "p1", TODAY)
    assert repr(template) == before
    assert out == {**template, "subject": {"reference": "Patient/p1"}, "status": "draft", "intent": "order",
                   "authoredOn": TODAY.isoformat()}
    assert type(out["code"]["coding"]) is type(template["code"]["coding"])
    out["code"]["coding"][0]["code"] = "changed"
    assert repr(template) == before


@pytest.mark.parametrize("card_id", cr.card_ids())
def test_empty_variables_leave_no_run_of_blank_lines(card_id):
    """A variable with nothing to say (no labs note, no kidney note) must not
    leave three or more line breaks in the detail an EHR may show as plain text."""
    empty = {name: "" for name in VARIABLES if name not in ("facts",)}
    card = cr.render(Finding(card_id, facts=("Lumbar spine T-score -2.7 on 2025-02-01",), variables=empty,
                             delete_draft="ServiceRequest/d1"),
                     patient_id="p1", today=TODAY)
    assert "\n\n\n" not in card["detail"].replace(" ", "")
    assert "Lumbar spine T-score -2.7 on 2025-02-01" in card["detail"]


def _fill_plain(text, variables):
    def sub(m):
        if m.group(1) not in variables:
            raise cr.CardTemplateError(f"no value for placeholder {{{{{m.group(1)}}}}}")
        return str(variables[m.group(1)])
    return cr._PLACEHOLDER.sub(sub, text)


def test_fill_by_pieces_is_the_regex_substitution():
    """_fill keeps each template string split at its placeholders (for speed): the same
    text as substituting each match, and the same error for the first missing value."""
    texts = [s for card_id in cr.card_ids() for s in fixtures._strings(cr.load_card(card_id))]
    texts += ["{{a}}", "x{{ a }}y{{b}}", "{{a}}{{a}}", "{{ not closed", "{{1bad}} {{a}}", "}}{{a}}{{", "plain"]
    assert sum("{{" in text for text in texts) > 100
    for text in texts:
        names = cr._PLACEHOLDER.findall(text)
        full = {name: f"<{name}:{i}>" for i, name in enumerate(names)} | {"a": 7, "b": "B"}
        for variables in (full, *({k: v for k, v in full.items() if k != name} for name in names[:3])):
            for _ in range(2):  # the first fill splits the text, the second reads the pieces kept
                try:
                    plain = _fill_plain(text, variables)
                except cr.CardTemplateError as exc:
                    with pytest.raises(cr.CardTemplateError) as fast:
                        cr._fill(text, variables)
                    assert str(fast.value) == str(exc)
                else:
                    assert cr._fill(text, variables) == plain, text
