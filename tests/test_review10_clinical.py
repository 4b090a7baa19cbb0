"""The tenth clinical review (a fresh reviewer on the in-process app): each finding with a
chart that makes the fixed rule fire and a quiet control. Charts are built with
tests.test_rules_second_pass's helpers; dates count back from TODAY."""

from __future__ import annotations

import pytest

from tests.test_review8_clinical import _drug_orders
from tests.test_rules_second_pass import TPTD, cards, cond, draft, obs, record


# ---------------------------------------------------------------------------
# HIGH 2. A pathological fracture in neoplastic disease (ICD-10-CM M84.5-) is a skeletal
# malignancy (brief 1 contraindication Conditions; SAFE-11: TPTD/ABL with bone metastases or
# skeletal malignancy), never a fragility fracture (brief 8.3: fragility needs M80-/osteoporotic codes).
# ---------------------------------------------------------------------------

def _labs(*extra, drafts=(), **kw):
    return record(obs("98979-8", 20, 70), obs("17861-6", 20, 9.4, "mg/dL"), obs("62292-8", 20, 35, "ng/mL"),
                  *extra, t_score=False, drafts=drafts, **kw)


@pytest.mark.parametrize("code, system", [("M84.58XA", None), ("M84.50XA", None), ("M8458XA", None),
                                          ("94222008", "http://snomed.info/sct"),
                                          ("109989006", "http://snomed.info/sct")])
def test_neoplastic_fracture_and_coded_bone_malignancy_rule_out_the_pth_analogues(code, system):
    c = cond(code, 60) if system is None else cond(code, 60, system=system)
    card = cards(_labs(c, obs("38267-1", 60, -3.4)))["C-TX-ANABOLIC"]
    assert "bone metastases or skeletal malignancy" in card["summary"] and not _drug_orders(card)
    signed = cards(_labs(c, obs("38267-1", 60, -3.4), drafts=[draft(TPTD)]), "order-sign")
    assert "Bone metastases / skeletal malignancy" in signed["C-SAFE-ANABOLIC-CONTRA"]["detail"]


def test_without_a_neoplastic_code_the_pth_analogues_stay_open():
    """Quiet control: the same chart with an age-related osteoporotic fracture (M80.08XA)."""
    card = cards(_labs(cond("M80.08XA", 60), obs("38267-1", 60, -3.4)))["C-TX-ANABOLIC"]
    assert len(_drug_orders(card)) == 3
    assert "C-SAFE-ANABOLIC-CONTRA" not in cards(_labs(obs("38267-1", 60, -3.4), drafts=[draft(TPTD)]), "order-sign")


def test_a_neoplastic_fracture_is_no_fragility_fracture():
    """M84.5- is in no fracture-site set: with osteopenia (T -2.0) it makes no osteoporosis and no
    drug card, and a hip S-code beside it is not read as a probable fragility fracture."""
    rec = _labs(cond("M84.58XA", 60), obs("38267-1", 60, -2.0), age=72)
    assert rec.fractures == () or not any(f.is_fragility for f in rec.fractures)
    assert not {"C-TX-BP", "C-TX-ANABOLIC", "C-TX-DMAB-ALT"} & set(cards(rec))
    hip = _labs(cond("M84.551A", 60), cond("S72.001A", 60), obs("38267-1", 60, -2.0), age=72)
    assert [f.fragility for f in hip.fractures] == ["unproven"]
    # Control: the hip S-code alone at 72 is a probable fragility fracture.
    alone = _labs(cond("S72.001A", 60), obs("38267-1", 60, -2.0), age=72)
    assert [f.fragility for f in alone.fractures] == ["probable"]
