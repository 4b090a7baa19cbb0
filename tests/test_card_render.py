import pytest

from cds_service import card_render as cr
from cds_service.rules.base import Action, Finding, Suggestion
from tests.conftest import TODAY

# Values for every placeholder the shipped templates use.
VARIABLES = {"population": "a postmenopausal woman", "recommendation": "ACP 2023 Rec 1a", "labs_note": "labs ok",
             "patient_instruction": "Take on waking.", "missing": "calcium and vitamin D",
             # order-safety cards
             "drug": "Alendronate", "drug_name": "alendronate", "verdict": "not recommended", "renal_limit": "35", "label_text": "Fosamax label",
             "situation": "Alendronate is being ordered.", "advice": "Consider denosumab.", "window": "12",
             "max_doses": "12", "max_months": "24", "vitd_summary": "25-OH vitamin D 15 ng/mL: replete first",
             "vitd_detail": "Replete vitamin D first."}


@pytest.mark.parametrize("card_id", cr.card_ids())
def test_every_card_template_renders_valid_fhir(card_id):
    card = cr.render(Finding(card_id, facts=("Lumbar spine T-score -2.7 on 2025-02-01",), variables=VARIABLES,
                             delete_draft="MedicationRequest/draft-1"),
                     patient_id="p1", today=TODAY, strict=True)
    assert len(card["summary"]) < 140
    assert card["indicator"] in ("info", "warning", "critical")
    assert card["source"]["topic"] == {"system": cr.RULES_SYSTEM, "code": card_id,
                                       "display": card["source"]["topic"]["display"]}
    assert card["source"]["url"].startswith("https://")
    assert "Lumbar spine T-score -2.7 on 2025-02-01" in card["detail"]
    assert "suggestions" not in card or card["selectionBehavior"] in ("at-most-one", "any")
    assert all(r["system"] == cr.OVERRIDE_REASON_SYSTEM and r["display"] for r in card["overrideReasons"])
    for s in card.get("suggestions", ()):
        for a in s["actions"]:
            if a["type"] == "delete":  # YAML delete actions take the draft's reference
                assert a["resourceId"] == ["MedicationRequest/draft-1"]
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
                                                    "resourceId": ["MedicationRequest/d1"]}


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
