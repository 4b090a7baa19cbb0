"""The tenth clinical review (a fresh reviewer on the in-process app): each finding with a
chart that makes the fixed rule fire and a quiet control. Charts are built with
tests.test_rules_second_pass's helpers; dates count back from TODAY."""

from __future__ import annotations

import pytest

from cds_service.rules import facts
from tests.test_review8_clinical import _drug_orders
from tests.test_rules_second_pass import DMAB, TPTD, S, cards, cond, draft, obs, record


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


# ---------------------------------------------------------------------------
# MEDIUM 7. eGFR in SI units (mL/s/1.73 m2) is converted (x 60), not read as mL/min; an eGFR
# in a unit the service does not know is no reading (brief 1: no eGFR means "unknown", never
# "low"; contract README "Units": normalise eGFR), counted as unreadable.
# ---------------------------------------------------------------------------

def _egfr(value, unit, oid="egfr-si"):
    return obs("98979-8", 20, value, unit, oid=oid,
               valueQuantity={"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit})


@pytest.mark.parametrize("unit", ["mL/s/{1.73_m2}", "mL/s/1.73m2", "ml/s/1.73 m2", "mL/sec/1.73m2"])
def test_an_egfr_in_ml_per_second_is_converted_to_ml_per_minute(unit):
    rec = record(_egfr(1.0, unit), drafts=[draft(DMAB)])
    assert facts.kidney(rec, S).value == 60
    assert "C-SAFE-DMAB-CKD" not in cards(rec, "order-sign")
    low = record(_egfr(0.4, unit), drafts=[draft(DMAB)])  # 24 mL/min: CKD 4
    card = cards(low, "order-sign")["C-SAFE-DMAB-CKD"]
    assert "eGFR 24" in card["detail"] and "eGFR 0" not in card["detail"]


@pytest.mark.parametrize("unit", ["mL/min/{1.73_m2}", "mL/min/1.73m2", "mL/min per 1.73 m2", "ml/min", ""])
def test_an_egfr_in_ml_per_minute_reads_as_reported(unit):
    """Quiet control: every mL/min spelling (and no unit) is read as it stands."""
    rec = record(obs("98979-8", 20, 25.0, unit, oid="egfr-min"), drafts=[draft(DMAB)])
    assert facts.kidney(rec, S).value == 25
    assert "C-SAFE-DMAB-CKD" in cards(rec, "order-sign")


@pytest.mark.parametrize("unit", ["mg/dL", "%", "mL/h", "umol/L"])
def test_an_egfr_in_an_unknown_unit_is_no_reading(unit):
    rec = record(_egfr(1.0, unit, oid="egfr-odd"), drafts=[draft(DMAB)])
    assert not facts.kidney(rec, S).known
    assert ("Observation/egfr-odd", "unreadable-value") in rec.ignored
    assert "C-SAFE-DMAB-CKD" not in cards(rec, "order-sign")


def test_an_egfr_bound_in_text_converts_its_unit_too():
    text = obs("98979-8", 20, 0, oid="egfr-text")
    del text["valueQuantity"]
    text["valueString"] = "> 1.5 mL/s/1.73m2"  # above 90 mL/min: a normal eGFR
    assert facts.kidney(record(text), S).value == 90
    text["valueString"] = "> 90 mL/min/1.73m2"
    assert facts.kidney(record(text), S).value == 90
    text["valueString"] = "< 1 mg/dL"
    assert not facts.kidney(record(text), S).known


def test_a_creatinine_in_an_unknown_unit_is_counted_as_unreadable():
    rec = record(obs("2160-0", 20, 1.1, "mmol/kg", oid="cr-odd"))
    assert ("Observation/cr-odd", "unreadable-value") in rec.ignored
    assert all(lab.name != "creatinine" for labs in rec.labs.values() for lab in labs)


# ---------------------------------------------------------------------------
# MEDIUM 5. An untreated patient with a high calcium: C-TX-BP names it (no "nothing on record
# against an oral bisphosphonate"), and C-SECONDARY-EVAL asks for its cause (brief SEC-1:
# hyperparathyroidism and myeloma are secondary causes; MON-7: PTH). The alendronate order stays:
# no label or brief section 4 rule makes a high calcium a bisphosphonate contraindication.
# ---------------------------------------------------------------------------

def _high_ca_chart(calcium=11.2, *extra, t=-2.8, **kw):
    return record(obs("17861-6", 20, calcium, "mg/dL"), obs("38267-1", 60, t), obs("62292-8", 20, 35, "ng/mL"),
                  obs("98979-8", 20, 70), *extra, t_score=False, **kw)


def _panel_codes(card):
    return [a["resource"]["code"]["coding"][0]["code"] for s in card["suggestions"] for a in s["actions"]
            if a.get("resource", {}).get("resourceType") == "ServiceRequest"]


def test_a_high_calcium_is_named_on_the_bisphosphonate_card_and_its_cause_is_sought():
    got = cards(_high_ca_chart())
    bp = got["C-TX-BP"]
    assert "nothing on record against" not in bp["detail"]
    assert "a **high calcium** (Serum calcium 11.2 mg/dL" in bp["detail"]
    assert "to explain before or alongside starting: hyperparathyroidism (PTH)" in bp["detail"]
    assert _drug_orders(bp)  # the one-click alendronate stays
    sec = got["C-SECONDARY-EVAL"]
    assert sec["summary"].startswith("High calcium with osteoporosis: evaluate for secondary causes")
    assert "2731-8" in _panel_codes(sec)  # intact PTH
    assert "17861-6" not in _panel_codes(sec)  # the calcium on record is not ordered again


def test_a_high_calcium_with_low_bone_mass_asks_for_its_cause():
    got = cards(_high_ca_chart(11.2, t=-1.8))
    assert got["C-SECONDARY-EVAL"]["summary"].startswith("High calcium with low bone mass")


def test_a_normal_or_explained_calcium_keeps_the_old_wording_and_no_work_up():
    """Quiet controls: a normal calcium; coded hyperparathyroidism (the cause is known)."""
    for chart in (_high_ca_chart(9.6), _high_ca_chart(11.2, cond("E21.0", 300))):
        got = cards(chart)
        assert "nothing on record against an oral bisphosphonate" in got["C-TX-BP"]["detail"]
        assert "C-SECONDARY-EVAL" not in got


def test_a_man_with_osteoporosis_and_a_high_calcium_hears_of_it_on_the_secondary_card():
    card = cards(_high_ca_chart(sex="male", age=70))["C-SECONDARY-EVAL"]
    assert card["summary"].startswith("Man with osteoporosis")
    assert "A **high calcium** (Serum calcium 11.2 mg/dL" in card["detail"]


# ---------------------------------------------------------------------------
# MEDIUM 6. Glucocorticoid-induced osteoporosis at high risk by the dose-adjusted FRAX alone:
# C-GIOP offers the oral bisphosphonate (second-pass 5: "treatment when risk is moderate or high
# (ACR22; oral bisphosphonate first)"), quiet where a drug-start card owns the start or a guard
# says no (bp_problems; the engine's critical-card veto for a low calcium or a pregnancy).
# ---------------------------------------------------------------------------

def _giop(*extra, t=-2.2, mof=15, hip=2.5, egfr=70, calcium=9.4, **kw):
    from tests.test_rules_second_pass import _pred
    labs = [obs("98979-8", 20, egfr)] if egfr is not None else []
    return record(_pred(10, 180), obs("38267-1", 60, t), obs("90265-0", 30, mof, "%"), obs("90266-8", 30, hip, "%"),
                  obs("17861-6", 20, calcium, "mg/dL"), obs("62292-8", 20, 35, "ng/mL"), *labs, *extra,
                  t_score=False, **kw)


def _alendronate(card):
    return [a for a in _drug_orders(card) if "alendronate" in a["resource"]["medicationCodeableConcept"]["text"]]


def test_giop_at_high_risk_by_the_adjusted_frax_offers_alendronate():
    got = cards(_giop())
    card = got["C-GIOP"]
    assert card["summary"].endswith("risk high")
    assert "glucocorticoid-adjusted 3.0%" in card["detail"]
    assert "alendronate 70 mg weekly is offered below" in card["detail"] and _alendronate(card)
    assert not {"C-TX-BP", "C-TX-ANABOLIC", "C-TX-DMAB-ALT"} & set(got)  # the only drug start


def test_giop_leaves_the_start_to_the_drug_card_when_the_general_rules_see_high_risk():
    """Quiet control: T -2.8 is osteoporosis: C-TX-BP offers alendronate, C-GIOP none."""
    got = cards(_giop(t=-2.8))
    assert _drug_orders(got["C-TX-BP"]) and not _alendronate(got.get("C-GIOP", {}))


@pytest.mark.parametrize("extra, egfr, why", [
    ((), 25, "eGFR 25"),                               # kidney below alendronate's 35 (Fosamax)
    ((cond("K22.2", 300),), 70, "Esophageal disorder"),  # SAFE-7
])
def test_giop_offers_no_alendronate_where_a_guard_says_no(extra, egfr, why):
    card = cards(_giop(*extra, egfr=egfr))["C-GIOP"]
    assert not _alendronate(card)
    assert "No alendronate offered: " in card["detail"] and why in card["detail"]
    assert "offered below" not in card["detail"]


def test_giop_alendronate_is_withheld_with_a_low_calcium():
    card = cards(_giop(calcium=7.9))["C-GIOP"]
    assert not _alendronate(card) and "No alendronate offered: Serum calcium 7.9 mg/dL" in card["detail"]
    assert "offered below" not in card["detail"]


# ---------------------------------------------------------------------------
# LOW. A glucocorticoid dose in grams (0.01 g = 10 mg) is read, not "a dose not readable".
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("unit, value, expected", [("g", 0.01, 10.0), ("gram", 0.005, 5.0), ("mg", 10, 10.0),
                                                   ("mL", 10, None)])
def test_a_prednisone_dose_in_grams_is_converted(unit, value, expected):
    from cds_service.record import glucocorticoid_daily_mg
    dosage = [{"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
               "doseAndRate": [{"doseQuantity": {"value": value, "unit": unit}}]}]
    assert glucocorticoid_daily_mg({"dosageInstruction": dosage}, {"text": "prednisone"}) == expected


# ---------------------------------------------------------------------------
# Review 11 M3 (a regression of the MEDIUM 7 fix, 2009a4c): UCUM "mL/(min.1.73.m2)" and
# "mL/(min.{1.73_m2})", the French "mL/mn/1.73m2" and "ml/mn" read as no eGFR at all, so an eGFR
# of 20 lost C-SAFE-DMAB-CKD on a denosumab order (Prolia label 5.3: severe
# hypocalcemia with eGFR < 30). Every per-minute spelling is read; mL/s x 60; any other unit is
# no reading and counted 'unreadable-value'. Through the Flask app, on the order-sign fixture.
# ---------------------------------------------------------------------------

def _dmab_order_with_egfr(client, value, unit):
    import re

    from cds_service import fixtures as fx
    from tests.test_fixture_scenarios import SERVICE_IDS, TODAY, hook_body

    bundle = fx.load_patient("c-safe-dmab-ckd-egfr-29", today=TODAY)
    egfr = next(e["resource"] for e in bundle["entry"] if e["resource"].get("id") == "os-dmabckd-01-lab-2")
    egfr["valueQuantity"] = {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}

    def unreadable():
        found = re.search(r'cds_record_ignored_total\{reason="unreadable-value"\} ([0-9.]+)',
                          client.get("/metrics").get_data(as_text=True))
        return float(found.group(1)) if found else 0.0

    before = unreadable()
    resp = client.post(f"/cds-services/{SERVICE_IDS['order-sign']}", json=hook_body(bundle, "order-sign"))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return {c["source"]["topic"]["code"]: c for c in resp.get_json()["cards"]}, unreadable() - before


PER_MINUTE = ["mL/(min.1.73.m2)", "mL/(min.{1.73_m2})", "mL/mn/1.73m2", "ml/mn", "mL/min/{1.73_m2}",
              "mL/min/1.73m2", "mL/min/1.73 m²", "ml/minute/1.73m2", "mL/min per 1.73 m2", "mL.min-1.(1.73.m2)-1",
              "ml/min", "mL/mins"]
PER_SECOND = ["mL/s/{1.73_m2}", "mL/(s.1.73.m2)", "mL/sec/1.73m2", "mL.s-1"]
NOT_EGFR = ["mL/h", "mL/d", "mg/dL", "umol/L", "%", "mL/m2", "ml/kg/min", "ml/month"]


@pytest.mark.parametrize("unit", PER_MINUTE)
def test_every_per_minute_egfr_spelling_is_read_through_http(client, unit):
    got, unreadable = _dmab_order_with_egfr(client, 20, unit)
    assert "eGFR 20 mL/min/1.73m2" in got["C-SAFE-DMAB-CKD"]["summary"]
    assert unreadable == 0


@pytest.mark.parametrize("unit", PER_SECOND)
def test_every_per_second_egfr_spelling_is_read_times_60_through_http(client, unit):
    got, _ = _dmab_order_with_egfr(client, 0.35, unit)  # 21 mL/min
    assert "eGFR 21 mL/min/1.73m2" in got["C-SAFE-DMAB-CKD"]["summary"]
    normal, _ = _dmab_order_with_egfr(client, 1.0, unit)  # 60 mL/min: no kidney card
    assert "C-SAFE-DMAB-CKD" not in normal


@pytest.mark.parametrize("unit", NOT_EGFR)
def test_an_egfr_in_another_unit_is_no_reading_and_counted_through_http(client, unit):
    got, unreadable = _dmab_order_with_egfr(client, 20, unit)
    assert "C-SAFE-DMAB-CKD" not in got  # unknown eGFR: not low (brief 1), and no guessed value
    assert unreadable == 1
