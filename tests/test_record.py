import datetime as dt

from cds_service.fhir import terminology as t
from cds_service.record import build_record, drafts_from_context, normalise_frax
from tests.conftest import TODAY, coding

PID = "p1"


def obs(oid, code, date, value=None, unit=None, system=t.LOINC, **extra):
    res = {"resourceType": "Observation", "id": oid, "status": "final", "code": coding(system, code),
           "effectiveDateTime": date, **extra}
    if value is not None:
        res["valueQuantity"] = {"value": value, **({"unit": unit} if unit else {})}
    return res


def bundle(*resources):
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def patient(gender="female", birth="1955-01-01"):
    return {"resourceType": "Patient", "id": PID, "gender": gender, "birthDate": birth}


def med(rtype, mid, concept, status="active", **extra):
    return {"resourceType": rtype, "id": mid, "status": status, "medicationCodeableConcept": concept, **extra}


def test_empty_prefetch_is_unknown_not_abnormal():
    r = build_record({"patient": None, "observations": None}, today=TODAY)
    assert r.age is None and r.sex is None and r.lowest_t is None
    assert r.lab("egfr") is None and r.smoker is None and r.skipped == ()
    assert r.menopausal_status == "unknown"


def test_bmd_latest_lowest_and_history():
    r = build_record({"patient": patient(), "observations": bundle(
        obs("a", "38267-1", "2022-01-01", -2.9),
        obs("b", "38267-1", "2025-02-01", -2.2),
        obs("c", "38264-8", "2025-02-01", -1.8),
        obs("d", "38266-3", "2025-02-01", -3.5),  # calcaneus: not diagnostic
    )}, today=TODAY)
    assert r.lowest_t.value == -2.2 and r.lowest_t.site == "LS"
    assert r.lowest_t.fact() == "Lumbar spine T-score -2.2 on 2025-02-01"
    assert r.lowest_t_ever.value == -2.9
    assert r.dxa_dates == (dt.date(2022, 1, 1), dt.date(2025, 2, 1))
    assert r.age == 70 and r.menopausal_status == "postmenopausal"


def test_units_normalised():
    r = build_record({"observations": bundle(
        obs("v", "14635-7", "2025-05-01", 50, "nmol/L"),
        obs("ca", "2000-8", "2025-05-01", 2.0, "mmol/L"),
        obs("alb", "1751-7", "2025-05-02", 30, "g/L"),
        obs("m", t.FRAX_MOF, "2025-05-01", 0.25, "1"),
        obs("h", "x-local", "2025-05-01", 3.5, "%", system="urn:local",),
    )}, today=TODAY)
    assert round(r.lab("vitamin_d").value, 1) == 20.0
    assert r.lab("calcium").value == 8.02
    assert r.lab("albumin").value == 3.0
    assert r.lab("calcium_corrected").value == 8.82
    assert r.latest_frax("mof").percent == 25.0
    assert r.latest_frax("hip") is None  # a local code without FRAX text is not FRAX


def test_frax_by_display_text_and_ambiguous_units():
    hip = obs("h", "999", "2025-05-01", 4.1, "%", system="urn:local")
    hip["code"]["coding"][0]["display"] = "FRAX hip fracture probability"
    r = build_record({"observations": bundle(hip)}, today=TODAY)
    assert r.latest_frax("hip").percent == 4.1
    assert normalise_frax(0.8, "") is None  # 0.8% or 80%? unknown
    assert normalise_frax(0.8, "%") == 0.8 and normalise_frax(25, "") == 25


def test_stale_lab_is_unknown():
    r = build_record({"observations": bundle(obs("e", "98979-8", "2023-01-01", 25))}, today=TODAY)
    assert r.lab("egfr", 12) is None
    assert r.lab("egfr").value == 25


def test_fractures_from_conditions_and_observations():
    cond = {"resourceType": "Condition", "id": "c1", "code": coding(t.ICD10CM, "S72.001A"),
            "onsetDateTime": "2025-04-01"}
    young = {"resourceType": "Condition", "id": "c0", "code": coding(t.ICD10CM, "S52.531A"),
             "onsetDateTime": "1990-04-01"}
    vfa = obs("o1", "38268-9", "2025-03-01", valueCodeableConcept=coding(t.SNOMED, "11311601000119109"))
    r = build_record({"patient": patient(), "conditions": bundle(cond, young), "observations": bundle(vfa)},
                     today=TODAY)
    by_ref = {f.ref: f for f in r.fractures}
    assert by_ref["Condition/c1"].site == t.HIP and by_ref["Condition/c1"].fragility == "probable"
    assert by_ref["Condition/c0"].fragility == "unproven"  # age 35 at the fracture
    assert by_ref["Observation/o1"].site == t.VERTEBRAL and by_ref["Observation/o1"].fragility == "specific"
    assert len(r.fragility_fractures()) == 2


def test_transport_accident_makes_s_code_traumatic():
    frac = {"resourceType": "Condition", "id": "f", "code": coding(t.ICD10CM, "S72.001A"), "onsetDateTime": "2025-04-01"}
    mva = {"resourceType": "Condition", "id": "v", "code": coding(t.ICD10CM, "V43.52XA"), "onsetDateTime": "2025-04-01"}
    r = build_record({"patient": patient(), "conditions": bundle(frac, mva)}, today=TODAY)
    assert r.fragility_fractures() == []


def test_conditions_status_and_menopause():
    resolved = {"resourceType": "Condition", "id": "mi", "code": coding(t.ICD10CM, "I21.9"),
                "clinicalStatus": coding(t.CONDITION_CLINICAL, "resolved"), "onsetDateTime": "2025-01-01"}
    refuted = {"resourceType": "Condition", "id": "x", "code": coding(t.ICD10CM, "N18.5"),
               "verificationStatus": coding("http://terminology.hl7.org/CodeSystem/condition-ver-status", "refuted")}
    pre = {"resourceType": "Condition", "id": "pre", "code": {"text": "Premenopausal"}}
    r = build_record({"patient": patient(birth="1972-01-01"), "conditions": bundle(resolved, refuted, pre)},
                     today=TODAY)
    assert not r.has("mi") and r.has("mi", active_only=False, within_months_=12)
    assert not r.has("kidney_failure", active_only=False)
    assert r.menopausal_status == "premenopausal"  # 53 but coded premenopausal
    r45 = build_record({"patient": patient(birth="1978-01-01")}, today=TODAY)
    assert r45.menopausal_status == "unknown"
    assert build_record({"patient": patient(birth="1985-01-01")}, today=TODAY).menopausal_status == "premenopausal"


def test_medication_exposure_doses_and_classes():
    aln = med("MedicationRequest", "a1", coding(t.RXNORM, "904431"), status="completed", authoredOn="2018-01-01",
              dispenseRequest={"validityPeriod": {"start": "2018-01-01", "end": "2023-01-01"}})
    romo = [med("MedicationAdministration", f"r{i}", {"text": "Evenity"}, status="completed",
                effectiveDateTime=f"2024-{i:02d}-15") for i in range(1, 13)]
    tptd = med("MedicationStatement", "t", {"text": "teriparatide"}, status="completed",
               effectivePeriod={"start": "2021-01-01", "end": "2022-01-01"})
    abl = med("MedicationRequest", "ab", {"text": "Tymlos"}, status="stopped", authoredOn="2022-01-01",
              dosageInstruction=[{"timing": {"repeat": {"boundsPeriod": {"start": "2022-01-01", "end": "2023-07-01"}}}}])
    r = build_record({"medicationRequests": bundle(aln, abl), "medicationAdministrations": bundle(*romo),
                      "medicationStatements": bundle(tptd)}, today=TODAY)
    a = r.medications["alendronate"]
    assert not a.active and a.stopped == dt.date(2023, 1, 1) and 59 < a.exposure_months < 61
    rz = r.medications["romosozumab"]
    assert rz.dose_count == 12 and rz.last_dose == dt.date(2024, 12, 15) and not rz.active
    assert 29 < r.class_exposure_months(t.PTH_ANALOG) < 31


def test_denosumab_dose_keeps_patient_covered():
    dose = med("MedicationAdministration", "d", coding(t.RXNORM, "993452"), status="completed",
               effectiveDateTime="2025-03-01")
    r = build_record({"medicationAdministrations": bundle(dose)}, today=TODAY)
    assert r.medications["denosumab"].active and r.medications["denosumab"].last_dose == dt.date(2025, 3, 1)


def test_contained_medication_and_flags():
    mr = {"resourceType": "MedicationRequest", "id": "w", "status": "active", "authoredOn": "2024-01-01",
          "contained": [{"resourceType": "Medication", "id": "m", "code": {"text": "warfarin 5 mg"}}],
          "medicationReference": {"reference": "#m"}}
    pred = med("MedicationRequest", "p", {"text": "prednisone 10 mg tablet"}, authoredOn="2025-01-01")
    r = build_record({"medicationRequests": bundle(mr, pred)}, today=TODAY)
    assert r.anticoagulant and r.long_term_corticosteroid
    short = build_record({"medicationRequests": bundle(
        med("MedicationRequest", "p", {"text": "prednisone"}, authoredOn="2025-05-20"))}, today=TODAY)
    assert not short.long_term_corticosteroid


def test_smoking_status():
    smoker = obs("s", t.SMOKING_STATUS, "2025-01-01", valueCodeableConcept=coding(t.SNOMED, "449868002"))
    never = obs("n", t.SMOKING_STATUS, "2025-04-01", valueCodeableConcept={"text": "Never smoker"})
    assert build_record({"observations": bundle(smoker)}, today=TODAY).smoker is True
    assert build_record({"observations": bundle(smoker, never)}, today=TODAY).smoker is False


def test_malformed_resources_are_skipped_and_counted(caplog):
    bad_date = obs("bad", "38267-1", "2025-01-01", -2.6)
    bad_date["valueQuantity"] = "not a quantity"
    broken = {"resourceType": "Condition", "id": "c", "code": coding(t.ICD10CM, "M81.0"), "clinicalStatus": 7}
    r = build_record({"patient": patient(), "observations": bundle(bad_date, "junk", obs("ok", "38267-1", "2025-01-01", -2.6)),
                      "conditions": {"resourceType": "Bundle", "entry": 5}, "medicationRequests": bundle(broken)},
                     today=TODAY)
    assert r.lowest_t.value == -2.6
    assert "?/?" in r.skipped and "Bundle/?" in r.skipped
    assert all("Synthetic" not in m and "-2.6" not in m for m in caplog.messages)


def test_drafts_classified_even_without_medication():
    draft_bundle = {"resourceType": "Bundle", "entry": [
        {"resource": {"resourceType": "MedicationRequest", "id": "d1", "status": "draft"}},  # sandbox style
        {"resource": {"resourceType": "MedicationRequest", "id": "d2", "status": "draft",
                      "medicationCodeableConcept": coding(t.RXNORM, "993452")}},
        {"resource": {"resourceType": "ServiceRequest", "id": "s1", "status": "draft", "code": coding(t.CPT, "77080")}},
        {"resource": {"resourceType": "ServiceRequest", "id": "s2", "status": "draft", "code": {"text": "Massage therapy"}}},
        {"resource": {"resourceType": "ServiceRequest", "id": "s3", "status": "draft",
                      "code": {"text": "referral"}, "performerType": coding(t.NUCC, "225700000X")}},
    ]}
    r = build_record({}, drafts=drafts_from_context({"draftOrders": draft_bundle}), today=TODAY,
                     selections=["MedicationRequest/d2"])
    kinds = {d.id: (d.kind, d.agents, d.selected) for d in r.drafts}
    assert kinds["d1"] == ("medication", (), False)
    assert kinds["d2"] == ("medication", ("denosumab",), True)
    assert kinds["s1"][0] == "dxa" and kinds["s2"][0] == "massage" and kinds["s3"][0] == "massage"
    assert [d.reference for d in r.judged_drafts] == ["MedicationRequest/d2"]
    assert r.drafts[0].resource["id"] == "d1"


def test_draft_requests_in_prefetch_are_not_exposure():
    r = build_record({"medicationRequests": bundle(med("MedicationRequest", "x", coding(t.RXNORM, "904431"),
                                                       status="draft", authoredOn="2025-05-01"))}, today=TODAY)
    assert "alendronate" not in r.medications


def test_speed_100_resources():
    import time
    obs_list = [obs(f"o{i}", "38267-1", f"2020-01-{(i % 28) + 1:02d}", -2.0) for i in range(100)]
    start = time.perf_counter()
    build_record({"observations": bundle(*obs_list)}, today=TODAY)
    assert time.perf_counter() - start < 0.05


def test_values_are_written_the_way_clinicians_write_them():
    from cds_service.record import as_written

    r = build_record({"observations": bundle(
        obs("t", "38267-1", "2025-01-01", -3.73865), obs("e", "98979-8", "2025-01-01", 61.6),
        obs("c", "17861-6", "2025-01-01", 9.04, "mg/dL"), obs("f", t.FRAX_MOF, "2025-01-01", 22.04, "%"),
    )}, today=TODAY)
    assert r.lowest_t.fact() == "Lumbar spine T-score -3.7 on 2025-01-01"
    assert r.lab("egfr").fact() == "eGFR 62 mL/min/1.73m2 on 2025-01-01"
    assert r.lab("calcium").fact() == "Serum calcium 9.0 mg/dL on 2025-01-01"
    assert r.latest_frax("mof").fact() == "FRAX 10-year major osteoporotic fracture probability 22% on 2025-01-01"
    assert [as_written(v, 1) for v in (-2.0, -0.04, 2.55, -2.45)] == ["-2.0", "0.0", "2.6", "-2.5"]
    assert as_written(61.5, 0) == "62"


# ---------------------------------------------------------------------------
# Care already on record (second-pass 7): orders, procedures, visits
# ---------------------------------------------------------------------------

def sr(sid, concept, status="active", **extra):
    return {"resourceType": "ServiceRequest", "id": sid, "status": status, "intent": "order",
            "subject": {"reference": f"Patient/{PID}"}, "code": concept, **extra}


def test_care_on_record_from_orders_procedures_and_visits():
    r = build_record({"patient": patient(), "serviceRequests": bundle(
        sr("pt", coding(t.SNOMED, "444831000124102"), authoredOn="2025-03-01"),
        sr("smoke", {"text": "Referral to the stop smoking service"}, authoredOn="2025-04-01"),
        sr("dxa", coding(t.CPT, "77080"), status="completed", authoredOn="2025-05-01"),
        sr("fall", coding(t.LOINC, "73830-2"), occurrenceDateTime="2025-07-01"),  # booked ahead: counts as today
        sr("revoked", coding(t.SNOMED, "390864007"), status="revoked", authoredOn="2025-05-02"),
        sr("draft", coding(t.SNOMED, "308453003"), status="draft", authoredOn="2025-05-02"),
        sr("lab", coding(t.LOINC, "17861-6"), authoredOn="2025-05-02"),  # not care of these kinds
    ), "procedures": bundle(
        {"resourceType": "Procedure", "id": "ex", "status": "completed", "code": coding(t.CPT, "97110"),
         "performedDateTime": "2025-02-01"},
    ), "encounters": bundle(
        {"resourceType": "Encounter", "id": "ot", "status": "finished", "period": {"start": "2025-01-15"},
         "type": [coding(t.CPT, "97166")]},
        {"resourceType": "Encounter", "id": "class", "status": "finished", "period": {"start": "2024-12-01"},
         "type": [{"text": "Falls prevention programme, group session"}]},
        {"resourceType": "Encounter", "id": "gone", "status": "cancelled", "period": {"start": "2025-01-20"},
         "type": [coding(t.CPT, "97161")]},
    )}, today=TODAY)
    kinds = [(c.kind, c.date.isoformat(), c.source) for c in r.care]
    assert kinds == [
        (t.EXERCISE_CARE, "2024-12-01", "Encounter"), (t.OT_CARE, "2025-01-15", "Encounter"),
        (t.PT_CARE, "2025-02-01", "Procedure"), (t.PT_CARE, "2025-03-01", "ServiceRequest"),
        (t.SMOKING_CESSATION_CARE, "2025-04-01", "ServiceRequest"), (t.DXA_CARE, "2025-05-01", "ServiceRequest"),
        (t.FALL_ASSESSMENT_CARE, TODAY.isoformat(), "ServiceRequest")]
    assert [c.ref for c in r.care_done([t.PT_CARE], 12)] == ["Procedure/ex", "ServiceRequest/pt"]
    assert [c.ref for c in r.care_done([t.PT_CARE], 12, since=dt.date(2025, 2, 2))] == ["ServiceRequest/pt"]
    assert r.care_done([t.EXERCISE_CARE], 5) == []  # December is 6 months before June
    assert r.care[3].fact() == "Physical therapy ordered on 2025-03-01"


def test_supply_end_of_an_order():
    alendronate = coding(t.RXNORM, "904431")
    r = build_record({"patient": patient(), "medicationRequests": bundle(
        med("MedicationRequest", "m", alendronate, authoredOn="2024-09-01",
            dispenseRequest={"expectedSupplyDuration": {"value": 28, "unit": "days", "code": "d"},
                             "numberOfRepeatsAllowed": 2}),
        med("MedicationRequest", "junk", alendronate, authoredOn="2024-10-01",
            dispenseRequest={"expectedSupplyDuration": {"value": 1e12, "code": "d"}}),
    )}, today=TODAY)
    events = {e.ref: e for e in r.medications["alendronate"].events}
    assert events["MedicationRequest/m"].supply_end == dt.date(2024, 9, 1) + dt.timedelta(days=84)
    assert events["MedicationRequest/junk"].supply_end is None  # a data error, not a supply (and no crash)
    assert r.skipped == ()
