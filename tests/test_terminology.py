from cds_service.fhir import terminology as t
from tests.conftest import coding


def test_fracture_sites_and_fragility():
    cases = {
        ("icd", "M80.08XA"): (t.VERTEBRAL, True),
        ("icd", "M80052A"): (t.HIP, True),
        ("icd", "M80.0B1A"): (t.PELVIS, True),
        ("icd", "M80.031A"): (t.WRIST, True),
        ("icd", "Z87.310"): (t.OTHER, True),
        ("icd", "S72.001A"): (t.HIP, False),
        ("icd", "S22.000A"): (t.VERTEBRAL, False),
        ("icd", "S52.531A"): (t.WRIST, False),
        ("icd", "S42.201A"): (t.HUMERUS, False),
        ("sct", "11311601000119109"): (t.VERTEBRAL, True),
        ("sct", "704336007"): (t.WRIST, True),
        ("sct", "5913000"): (t.HIP, False),
        # issue 14: distal ulna is the distal forearm (was read as no fracture); rib,
        # clavicle and ankle fractures are fractures (see PROBABLE_FRAGILITY_SITES for how they count)
        ("icd", "S52.6"): (t.WRIST, False),
        ("icd", "S22.31XA"): (t.RIB, False),
        ("icd", "S42.001A"): (t.CLAVICLE, False),
        ("icd", "S82.51XA"): (t.ANKLE, False),
        ("sct", "359817006"): (t.HIP, False),
        ("sct", "65966004"): (t.WRIST, False),
    }
    for (kind, code), (site, specific) in cases.items():
        system = t.ICD10CM if kind == "icd" else t.SNOMED
        got = t.classify_fracture(coding(system, code))
        assert got is not None, code
        assert (got.site, got.fragility_specific) == (site, specific), code
    assert t.classify_fracture(coding(t.ICD10CM, "M81.0")) is None
    assert t.classify_fracture(coding(t.ICD10CM, "S52.2")) is None  # forearm shaft: not a fragility site
    assert t.classify_fracture(coding(t.ICD10CM, "S92.001A")) is None  # foot
    assert t.classify_fracture(None) is None


def test_condition_groups():
    assert "osteoporosis" in t.condition_groups(coding(t.ICD10CM, "M81.0"))
    assert "osteopenia" in t.condition_groups(coding(t.ICD10CM, "M85.851"))
    assert "osteopenia" not in t.condition_groups(coding(t.ICD10CM, "M89.8X1"))
    assert "kidney_failure" in t.condition_groups(coding(t.ICD10CM, "N18.5"))
    assert t.condition_groups(coding(t.ICD10CM, "N18.31")) == []  # CKD 3a is not kidney failure
    assert "mi" in t.condition_groups(coding(t.ICD10CM, "I21.4"))
    assert "falls" in t.condition_groups(coding(t.SNOMED, "161898004"))
    assert "esophageal" in t.condition_groups({"text": "Barrett's esophagus"})
    assert t.condition_groups(coding(t.ICD10CM, "E11.9")) == []


def test_drug_matching_codes_names_and_oncology():
    assert t.classify_medication(coding(t.RXNORM, "904431")).agents == ("alendronate",)
    assert t.classify_medication({"text": "Prolia 60 mg/mL"}).agents == ("denosumab",)
    xgeva = t.classify_medication({"text": "Xgeva 120 mg/1.7 mL injection"})
    assert xgeva.agents == ("denosumab",) and xgeva.oncology
    zometa = t.classify_medication(coding(t.RXNORM, "1114085"))
    assert zometa.agents == ("zoledronic_acid",) and zometa.oncology
    assert not t.classify_medication(coding(t.RXNORM, "705824")).oncology
    assert t.classify_medication({"text": "Evenity 105 mg/1.17 mL"}).classes == {t.ROMOSOZUMAB}
    assert t.classify_medication({"text": "Forteo pen"}).classes == {t.PTH_ANALOG}
    assert set(t.classify_medication({"text": "Fosamax Plus D"}).agents) == {"alendronate", "vitamin_d"}
    # salts and look-alikes are not supplements
    assert t.classify_medication({"text": "atorvastatin calcium 20 mg"}).agents == ()
    assert t.classify_medication({"text": "calcitriol 0.25 mcg"}).agents == ()
    assert t.classify_medication({"text": "gabapentin 120 mg"}).agents == ()
    assert t.classify_medication({"text": "apixaban 5 mg"}).classes == {t.ANTICOAGULANT}
    assert t.classify_medication({"text": "prednisone 10 mg tablet"}).classes == {t.CORTICOSTEROID}
    assert t.classify_medication({"text": "budesonide inhaler"}).agents == ()
    assert t.classify_medication(None).agents == ()


def test_order_concepts():
    assert t.is_dxa_concept(coding(t.CPT, "77080"))
    assert t.is_dxa_concept({"text": "DEXA scan"})
    assert t.is_massage_concept(coding(t.CPT, "97124"))
    assert t.is_massage_concept(coding(t.NUCC, "225700000X"))
    assert t.is_pt_concept(coding(t.SNOMED, "306170007"))
    assert not t.is_massage_concept({"text": "DXA"})
