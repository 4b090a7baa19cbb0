"""Review 20 (clinical): a coded hypocalcemia outdated by a newer measured calcium (M4), and the
massage card's site cautions and summary (L2). Charts built with tests.test_rules_second_pass's
helpers and judged by the engine as the app runs it (engine.evaluate, strict); dates count back
from TODAY. Sources: second-pass.md section 2 (C-SAFE-HYPOCA: "corrected calcium below the lower
limit, or coded hypocalcemia"; the drug labels: correct hypocalcemia first) and section 6 (bone
metastases: warning, no pressure over lesions; seed 002)."""

from __future__ import annotations

import pytest

from tests.test_review18_oncology import _words
from cds_service.card_render import SUMMARY_MAX
from cds_service.fhir import terminology as t
from tests.conftest import coding
from tests.test_rules_second_pass import ALN, DMAB, ROMO, ZOL, ago, cards, cond, draft, med, obs, record, sr

CA = "17861-6"        # calcium, serum or plasma (mg/dL)
ALBUMIN = "1751-7"    # g/dL
IONIZED = "1995-0"    # mmol/L
VIT_D = obs("62292-8", 83, 32, "ng/mL", oid="vitd")


def _hypoca(days, cid="hypo", recorded_days=None):
    """E83.51 hypocalcemia, active (no clinicalStatus: active), onset `days` ago."""
    r = cond("E83.51", days, cid=cid)
    if recorded_days is not None:
        r["recordedDate"] = ago(recorded_days)
    return r


def _order(*resources, agent=DMAB):
    return cards(record(*resources, VIT_D, drafts=[draft(agent, "r2")]), "order-sign")


# ---------------------------------------------------------------------------
# M4. old-hypoca-code-normal-ca-now: E83.51 five years old, still active; a normal serum calcium
# (9.4 mg/dL) 83 days ago. On a denosumab draft C-SAFE-HYPOCA fired critical without listing the
# calcium, and C-SUPP-CAVD said "calcium is low".
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("newer", [
    pytest.param((obs(CA, 83, 9.4, "mg/dL"),), id="serum-calcium-9.4"),
    pytest.param((obs(CA, 83, 8.1, "mg/dL"), obs(ALBUMIN, 83, 3.0, "g/dL")), id="corrected-8.9"),
    pytest.param((obs(IONIZED, 83, 1.20, "mmol/L"),), id="ionized-1.20"),
])
@pytest.mark.parametrize("agent", [DMAB, ZOL, ALN])
def test_an_old_hypocalcemia_code_with_a_newer_normal_calcium_is_not_hypocalcemia_now(newer, agent):
    got = _order(_hypoca(5 * 365), cond("M81.0"), *newer, agent=agent)
    assert "C-SAFE-HYPOCA" not in got
    card = got["C-SUPP-CAVD"]
    assert card.get("variant") != "low-calcium" and "calcium is low" not in card["summary"]
    assert "Calcium is low" not in card["detail"] and "Skip calcium" in card["detail"]
    # the code and the calcium that outdates it, both listed
    line = next(f for f in card["detail"].splitlines() if "Hypocalcemia (E83.51)" in f)
    assert "not current, a newer calcium is not low" in line and "calcium" in line.split("(", 2)[2].lower()


def test_the_reviewer_chart_patient_view_offers_alendronate():
    """C-TX-BP no longer holds its orders for the old code (Fosamax: hypocalcemia), nor says calcium is low."""
    rec = record(_hypoca(5 * 365), obs(CA, 83, 9.4, "mg/dL"), VIT_D, obs("98979-8", 83, 72, "mL/min/1.73m2"))
    card = cards(rec)["C-TX-BP"]
    assert "Order alendronate 70 mg once weekly" in [s["label"] for s in card.get("suggestions", ())]
    assert "Calcium is low" not in card["detail"] and "Hypocalcemia (E83.51)" not in card["detail"]


def test_a_recent_hypocalcemia_code_with_no_calcium_still_fires():
    """Control (fail closed): coded hypocalcemia, no calcium on record."""
    card = _order(_hypoca(30))["C-SAFE-HYPOCA"]
    assert card["indicator"] == "critical"
    assert "(hypocalcemia on the problem list, with no calcium measured since)" in _words(card)
    assert card["suggestions"][0]["label"] == "Hold denosumab: remove the draft and recheck serum calcium"


@pytest.mark.parametrize("code,why", [
    pytest.param(_hypoca(20), "older than", id="coded-after-the-calcium"),
    pytest.param(_hypoca(83), "the same day as", id="coded-the-same-day"),
    pytest.param(_hypoca(5 * 365, recorded_days=20), "older than", id="old-onset-recorded-after-the-calcium"),
    pytest.param({**_hypoca(0), "onsetDateTime": None}, "the hypocalcemia code is undated", id="undated-code"),
])
def test_a_hypocalcemia_code_no_calcium_outdates_still_fires_and_lists_the_calcium(code, why):
    """Controls: the code is as new as the calcium or newer (by onset or recordedDate), or undated."""
    code = {k: v for k, v in code.items() if v is not None}
    got = _order(code, obs(CA, 83, 9.4, "mg/dL", oid="ca"), cond("M81.0"))
    card = got["C-SAFE-HYPOCA"]
    assert card["indicator"] == "critical"
    assert "with no calcium measured since" in _words(card)
    assert f"Serum calcium 9.4 mg/dL on {ago(83)} ({why}" in card["detail"]
    supp = got["C-SUPP-CAVD"]
    assert "calcium is low" in supp["summary"] and f"Serum calcium 9.4 mg/dL on {ago(83)} ({why}" in supp["detail"]


def test_a_low_calcium_newer_than_anything_fires_as_the_measured_value():
    """Control: an old code, an older normal calcium, a low calcium 10 days ago."""
    got = _order(_hypoca(5 * 365), obs(CA, 200, 9.4, "mg/dL"), obs(CA, 10, 7.9, "mg/dL"), cond("M81.0"))
    card = got["C-SAFE-HYPOCA"]
    assert "(serum calcium below the lower limit)" in _words(card)
    assert f"Serum calcium 7.9 mg/dL on {ago(10)} (below 8.5 mg/dL)" in card["detail"]
    assert "Hypocalcemia (E83.51)" not in card["detail"]
    assert "calcium is low" in got["C-SUPP-CAVD"]["summary"]


def test_a_newer_low_ionized_calcium_still_fires_beside_an_old_code():
    got = _order(_hypoca(5 * 365), obs(CA, 200, 9.4, "mg/dL"), obs(IONIZED, 10, 1.0, "mmol/L"))
    assert "an ionized calcium below its lower limit" in _words(got["C-SAFE-HYPOCA"])


def test_romosozumab_and_a_resolved_code_unchanged():
    """Controls: romosozumab with a code newer than the calcium fires; a resolved code never did."""
    assert "C-SAFE-HYPOCA" in _order(_hypoca(20), obs(CA, 83, 9.4, "mg/dL"), agent=ROMO)
    resolved = cond("E83.51", 30, status="resolved")
    assert "C-SAFE-HYPOCA" not in _order(resolved)


# ---------------------------------------------------------------------------
# L2. massage-bonemets-anticoag: osteoporosis, bone metastases (C79.51), apixaban, a massage draft.
# The bullet "Not here: bone metastases ...: no pressure over or near the lesions" read as "does not
# apply", and the summary named only the osteoporosis, though the metastases are a warning trigger
# of their own (second-pass 6).
# ---------------------------------------------------------------------------

MASSAGE = sr(coding(t.CPT, "97124"), sid="r3")
APIXABAN = med({"text": "apixaban 5 mg"}, 100, rid="apix")
METS = cond("C79.51", 100)


def _massage(*resources, order=MASSAGE, t_score=True):
    return cards(record(*resources, drafts=[order], t_score=t_score), "order-sign")["C-MASSAGE-SAFETY"]


def test_bone_metastases_are_said_to_apply_and_named_in_the_summary():
    card = _massage(METS, APIXABAN)
    assert card["indicator"] == "warning"
    assert card["summary"] == ("Massage order: bone metastases or skeletal malignancy: no pressure over or near the "
                               "lesions; osteoporosis: gentle techniques only")
    assert "- **Bone metastases or skeletal malignancy on record: no pressure over or near the lesions.**" \
        in card["detail"]
    note = card["suggestions"][0]["actions"][0]["resource"]["note"][-1]["text"]
    assert "Bone metastases or skeletal malignancy on record: no pressure over or near the lesions." in note
    assert "Not here" not in card["detail"] and "Not here" not in note


@pytest.mark.parametrize("resource,line,summary", [
    (cond("S81.812A", 10), "Open wound on record: do not massage over or near it.", "open wound: not over or near it"),
    (cond("L03.115", 10), "Active skin or soft-tissue infection on record: do not massage over it.",
     "skin or soft-tissue infection: not over it"),
])
def test_each_place_not_to_treat_reads_as_this_patients(resource, line, summary):
    card = _massage(resource, t_score=False)
    assert f"- **{line}**" in card["detail"] and "Not here" not in card["detail"]
    assert card["summary"] == f"Massage order: {summary}"


def test_every_warning_trigger_fits_the_summary():
    """Bone metastases, a wound, an infection and surgery beside a fragility fracture: the summary
    stays within the CDS Hooks limit (strict rendering raises otherwise) and still names each."""
    surgery = {"resourceType": "Procedure", "id": "surg", "status": "completed", "performedDateTime": ago(20),
               "code": {"text": "Laparoscopic cholecystectomy"}}
    knee = sr(coding(t.CPT, "97140"), sid="r3", bodySite=[{"text": "left knee"}])
    card = _massage(METS, cond("S81.812A", 10), cond("L03.115", 10), surgery, order=knee)
    assert card["indicator"] == "warning" and len(card["summary"]) <= SUMMARY_MAX
    for words in ("bone metastases", "open wound", "infection", "surgery 2 weeks ago", "osteoporosis"):
        assert words in card["summary"]


def test_osteoporosis_alone_keeps_its_summary():
    """Quiet control: no place not to treat, the summary as before."""
    card = _massage(APIXABAN)
    assert card["summary"] == ("Massage order: patient has osteoporosis: gentle techniques only, no deep pressure near "
                               "spine, ribs, hips")
    assert "on record:" not in card["detail"]
