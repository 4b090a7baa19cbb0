"""The value-set files and the machinery that loads them (cds_service.fhir.valuesets)."""

import json
from pathlib import Path

import pytest
from fhir.resources.R4B.valueset import ValueSet

from cds_service.cli import main as cli_main
from cds_service.config import SettingsError
from cds_service.fhir import valuesets as vs
from cds_service.fhir.valuesets import CPT, ICD10CM, LOINC, NUCC, RXNORM, SNOMED

SHIPPED = sorted(vs.shipped_dir().glob("*.json"))
SD = "https://github.com/osteoporosis-cds/StructureDefinition/"


@pytest.fixture(autouse=True)
def _shipped_terminology_after():
    yield
    vs.configure(None)  # tests that configure extras must not leak them


def _json(path):
    return json.loads(path.read_text(encoding="utf-8"))


def _contains(items):
    for item in items or ():
        yield item
        yield from _contains(item.get("contains"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_file_is_a_valid_fhir_valueset_with_marked_codes(path):
    data = _json(path)
    ValueSet.model_validate(data)  # raises on anything that is not FHIR R4(B)
    assert data["id"] == path.stem and data["url"].endswith("/ValueSet/" + path.stem)
    assert data["expansion"]["timestamp"]
    for item in _contains(data["expansion"].get("contains")):
        assert item["system"] in vs.KNOWN_SYSTEMS, (item["system"], item["code"])
        assert item.get("display"), item["code"]
        ext = {e["url"]: e for e in item["extension"]}
        assert ext[SD + "code-mark"]["valueCode"] in {"V", "V?", "U"}, item["code"]
        assert ext[SD + "code-source"]["valueString"].strip(), item["code"]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_compose_and_expansion_say_the_same(path):
    """The expansion lists exactly the composed codes; an is-a root is listed,
    flagged descendants-included, and only ICD-10-CM has roots."""
    data = _json(path)
    composed, roots = set(), set()
    for include in (data.get("compose") or {}).get("include", ()):
        composed |= {(include["system"], c["code"]) for c in include.get("concept", ())}
        for flt in include.get("filter", ()):
            assert (include["system"], flt["property"], flt["op"]) == (ICD10CM, "concept", "is-a")
            roots.add((include["system"], flt["value"]))
    expanded, flagged = set(), set()
    for item in _contains(data["expansion"].get("contains")):
        key = (item["system"], item["code"])
        expanded.add(key)
        if any(e["url"] == SD + "descendants-included" and e["valueBoolean"] for e in item["extension"]):
            flagged.add(key)
    assert flagged == roots
    assert expanded == composed | roots


def test_no_code_is_claimed_by_two_incompatible_concepts():
    terminology = vs.load()
    assert terminology.conflicts() == []
    # and the check is real: a hip code added to the wrist set is caught
    sites = {c: terminology.concept(c) for c in terminology.ids("fracture-site-")}
    wrist = sites["fracture-site-wrist-forearm"]
    broken = dict(sites, **{wrist.id: vs.Concept(
        wrist.id, wrist.url, wrist.name, wrist.title,
        {**wrist.codes, SNOMED: wrist.codes[SNOMED] | {"359817006"}}, wrist.prefixes)})
    assert "359817006 is in more than one fracture site set" in vs.Terminology(broken).conflicts()[0]


CLASSIFY = [
    # (system, code as EHRs send it) -> the concepts it must land in (and no other of its family)
    (SNOMED, "359817006", {"fracture-site-hip"}),                 # closed fracture of hip (Synthea)
    (SNOMED, "5913000", {"fracture-site-hip"}),
    (SNOMED, "65966004", {"fracture-site-wrist-forearm"}),        # fracture of forearm (Synthea)
    (SNOMED, "263102004", {"fracture-site-wrist-forearm"}),       # fracture subluxation of wrist
    (SNOMED, "269083002", {"fracture-site-wrist-forearm"}),       # closed Colles' fracture
    (SNOMED, "33737001", {"fracture-site-rib"}),
    (SNOMED, "58150001", {"fracture-site-clavicle"}),
    (SNOMED, "16114001", {"fracture-site-ankle"}),
    (SNOMED, "42636007", {"fracture-site-humerus"}),
    (SNOMED, "207957008", {"fracture-site-vertebral"}),           # closed fracture lumbar vertebra
    (SNOMED, "91037003", {"fracture-site-pelvis"}),
    (SNOMED, "443165006", {"fracture-site-unspecified", "fracture-fragility", "condition-osteoporosis"}),
    (SNOMED, "431031001", {"fracture-site-hip", "fracture-fragility", "condition-osteoporosis"}),
    (SNOMED, "11874381000119101", {"fracture-site-rib", "fracture-fragility", "condition-osteoporosis"}),
    (ICD10CM, "M80.08XA", {"fracture-site-vertebral", "fracture-fragility", "condition-osteoporosis"}),
    (ICD10CM, "M8008XA", {"fracture-site-vertebral", "fracture-fragility", "condition-osteoporosis"}),
    (ICD10CM, "m80.0b1a", {"fracture-site-pelvis", "fracture-fragility", "condition-osteoporosis"}),
    (ICD10CM, "M80.052A", {"fracture-site-hip", "fracture-fragility", "condition-osteoporosis"}),
    (ICD10CM, "Z87.310", {"fracture-site-unspecified", "fracture-fragility", "fracture-history"}),
    (ICD10CM, "S72.001A", {"fracture-site-hip"}),
    (ICD10CM, "S52.531A", {"fracture-site-wrist-forearm"}),
    (ICD10CM, "S82.841A", {"fracture-site-ankle"}),
    (ICD10CM, "M84.754A", {"condition-atypical-femoral-fracture"}),  # not a hip fracture
    (ICD10CM, "M81.0", {"condition-osteoporosis"}),
    (ICD10CM, "M85.851", {"condition-osteopenia"}),
    (ICD10CM, "N18.5", {"condition-kidney-failure"}),
    (ICD10CM, "N18.4", {"condition-ckd-4"}),
    (ICD10CM, "I21.4", {"condition-mi"}),
    (ICD10CM, "V43.52XA", {"condition-transport-accident"}),
    (LOINC, "49765-1", {"lab-calcium-total"}),                    # calcium in blood (Synthea)
    (LOINC, "17861-6", {"lab-calcium-total"}),
    (LOINC, "29265-6", {"lab-calcium-corrected"}),
    (LOINC, "1994-3", {"lab-calcium-ionized"}),
    (LOINC, "33914-3", {"lab-egfr"}),
    (LOINC, "98979-8", {"lab-egfr"}),
    (LOINC, "2160-0", {"lab-creatinine"}),
    (LOINC, "38483-4", {"lab-creatinine"}),  # blood creatinine (Synthea, point of care): review 16
    (LOINC, "14635-7", {"lab-vitamin-d-25oh"}),
    (LOINC, "38265-5", {"dxa-t-score-radius"}),
    (LOINC, "38263-0", {"dxa-t-score-fn"}),
    (LOINC, "90265-0", {"frax-mof"}),
    (RXNORM, "904419", {"drug-alendronate"}),                     # alendronic acid 10 mg (Synthea)
    (RXNORM, "993452", {"drug-denosumab"}),
    (RXNORM, "1114085", {"drug-zoledronic-acid-oncology"}),
    (RXNORM, "705824", {"drug-zoledronic-acid"}),
    (RXNORM, "2716408", {"drug-teriparatide"}),
    (CPT, "77080", {"order-dxa"}),
    (NUCC, "225700000X", {"order-massage"}),
]


@pytest.mark.parametrize("system,code,expected", CLASSIFY, ids=lambda x: x if isinstance(x, str) else "")
def test_codes_classify_as_expected(system, code, expected):
    assert vs.active().concepts_for(system, code) == expected


@pytest.mark.parametrize("system,code", [
    (ICD10CM, "S52.2"),        # forearm shaft: not a wrist/forearm fragility site
    (ICD10CM, "S12.000A"),     # cervical vertebra, traumatic: not in the vertebral set
    (ICD10CM, "M89.8X1"),      # "other specified disorders of bone": not osteopenia
    (ICD10CM, "E11.9"),
    (ICD10CM, "M8"),           # a fragment is not a code under M80.0
    (SNOMED, "125605004"),     # fracture of bone, site and mechanism unknown
    (LOINC, "2345-7"),         # glucose
    (ICD10CM, "N18.30"),       # CKD 3 unspecified: not kidney failure
    (RXNORM, "123456789"),
    ("http://example.org/local", "904419"),  # right code, wrong system
])
def test_near_misses_stay_out(system, code):
    assert vs.active().concepts_for(system, code) == frozenset()


def test_api_for_prefetch_and_reader():
    t = vs.active()
    assert "359817006" in t.codes("fracture-site-hip", SNOMED)
    assert t.prefixes("fracture-site-hip") >= {"S720", "S721", "S722", "M8005", "M8085"}
    assert t.prefix_matches(ICD10CM, "S72.001A") == {"fracture-site-hip"}
    assert t.prefix_matches(SNOMED, "359817006") == frozenset()
    assert t.ids("fracture-site-") == tuple(sorted(
        f"fracture-site-{s}" for s in ("hip", "vertebral", "wrist-forearm", "humerus", "pelvis", "rib",
                                       "clavicle", "ankle", "other", "unspecified")))
    assert t.units("lab-calcium-total")[0] == ("mg/dL", 1.0) and ("mmol/L", 4.008) in t.units("lab-calcium-total")
    assert "fosamax" in t.names("drug-alendronate")
    assert t.mark("drug-denosumab", RXNORM, "993449")[0] == "U"
    assert t.mark("fracture-site-hip", ICD10CM, "s72.0")[0] == "V"
    assert t.concepts_in({"coding": [{"system": LOINC, "code": "49765-1"}, {"system": SNOMED, "code": "x"}],
                          "text": "calcium"}) == {"lab-calcium-total"}
    assert t.concepts_in(None) == frozenset()
    with pytest.raises(KeyError):
        t.codes("no-such-concept", SNOMED)


# ---------------------------------------------------------------------------
# Site files: CDS_EXTRA_VALUESETS_DIR
# ---------------------------------------------------------------------------

def _site_file(folder: Path, name: str, body: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(body), encoding="utf-8")
    return path


LOCAL_CALCIUM = {
    "resourceType": "ValueSet", "url": "https://github.com/osteoporosis-cds/ValueSet/lab-calcium-total",
    "status": "active",
    "compose": {"include": [{"system": "urn:oid:1.2.3.4.5", "concept": [{"code": "CA-SER"}]}]},
    "expansion": {"timestamp": "2026-01-01T00:00:00Z",
                  "contains": [{"system": "urn:oid:1.2.3.4.5", "code": "CA-BLD", "display": "Calcium, blood"}]},
}
LOCAL_HIP_BY_NAME = {
    "resourceType": "ValueSet", "name": "FractureSiteHip", "status": "active",
    "compose": {"include": [{"system": ICD10CM, "filter": [{"property": "concept", "op": "is-a",
                                                             "value": "M97.0"}]}]},
}


def test_site_files_merge_into_shipped_concepts(tmp_path, make_app):
    folder = tmp_path / "valuesets"
    _site_file(folder, "calcium.json", LOCAL_CALCIUM)
    _site_file(folder, "hip.json", LOCAL_HIP_BY_NAME)
    make_app(CDS_EXTRA_VALUESETS_DIR=str(folder))
    t = vs.active()
    assert t.concepts_for("urn:oid:1.2.3.4.5", "CA-BLD") == {"lab-calcium-total"}   # from the expansion
    assert t.concepts_for("urn:oid:1.2.3.4.5", "CA-SER") == {"lab-calcium-total"}   # from compose
    assert t.concepts_for(ICD10CM, "M97.01XA") == {"fracture-site-hip"}              # by name, is-a
    assert t.concepts_for(LOINC, "49765-1") == {"lab-calcium-total"}                 # shipped codes kept
    assert t.mark("lab-calcium-total", "urn:oid:1.2.3.4.5", "CA-BLD")[1] == "site file calcium.json"
    assert t.concept("lab-calcium-total").files[-1].endswith("calcium.json")
    # a fresh app without the setting is back to the shipped sets
    make_app()
    assert vs.active().concepts_for("urn:oid:1.2.3.4.5", "CA-BLD") == frozenset()



def test_site_files_leave_the_shipped_concepts_as_they_were(tmp_path):
    """The shipped concepts are read once per process and shared by every
    load: merging a site file builds new ones and changes none of them."""
    before = vs.load(None).concept("lab-calcium-total")
    folder = tmp_path / "valuesets"
    _site_file(folder, "calcium.json", LOCAL_CALCIUM)
    merged = vs.load(folder).concept("lab-calcium-total")
    assert merged.codes["urn:oid:1.2.3.4.5"] == {"CA-BLD", "CA-SER"}
    after = vs.load(None).concept("lab-calcium-total")
    assert after == before and "urn:oid:1.2.3.4.5" not in after.codes and len(after.files) == 1
    assert ("urn:oid:1.2.3.4.5", "CA-BLD") not in after.marks

BAD_FILES = [
    ("broken.json", "{not json", "not valid JSON"),
    ("patient.json", {"resourceType": "Patient"}, "not a FHIR ValueSet"),
    ("invalid.json", {**LOCAL_CALCIUM, "expansion": {"contains": []}},
     "not a valid FHIR R4 ValueSet: expansion.timestamp"),
    ("stranger.json", {**LOCAL_CALCIUM, "url": "https://example.org/ValueSet/mine"}, "matches no shipped value set"),
    ("snomed-isa.json", {**LOCAL_HIP_BY_NAME, "compose": {"include": [{"system": SNOMED, "filter": [
        {"property": "concept", "op": "is-a", "value": "71620000"}]}]}}, "is not supported"),
    ("whole-system.json", {**LOCAL_HIP_BY_NAME, "compose": {"include": [{"system": SNOMED}]}},
     "including all of http://snomed.info/sct is not supported"),
    ("conflict.json", {**LOCAL_HIP_BY_NAME, "compose": {"include": [{"system": SNOMED, "concept": [
        {"code": "65966004"}]}]}}, "65966004 is in more than one fracture site set"),
]


@pytest.mark.parametrize("name,body,reason", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_a_bad_site_file_stops_start_up_with_one_clear_line(tmp_path, make_app, capsys, monkeypatch, name, body,
                                                           reason):
    folder = tmp_path / "valuesets"
    _site_file(folder, "good.json", LOCAL_CALCIUM)
    path = folder / name
    path.write_text(body if isinstance(body, str) else json.dumps(body), encoding="utf-8")
    with pytest.raises(SettingsError) as exc:
        make_app(CDS_EXTRA_VALUESETS_DIR=str(folder))
    message = str(exc.value)
    assert message.startswith(f"CDS_EXTRA_VALUESETS_DIR={str(folder)!r}: ") and reason in message and "\n" not in message
    if reason != "65966004 is in more than one fracture site set":
        assert str(path) in message
    # the command line says it in one line too, before any worker starts
    monkeypatch.setenv("CDS_EXTRA_VALUESETS_DIR", str(folder))
    monkeypatch.setenv("CDS_PATIENT_HASH_SECRET", "test-patient-hash-secret-0123456789abcdef")
    monkeypatch.setattr("cds_service.server.run_production", lambda *a, **k: pytest.fail("server started"))
    assert cli_main(["serve"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "configuration error" in line]
    assert err == [f"cds-service serve: configuration error: {message}"]  # the server's start says the same


def test_every_bad_site_file_is_named_in_the_one_line(tmp_path, make_app):
    # a site fixing its folder should not meet its bad files one restart at a time
    folder = tmp_path / "valuesets"
    _site_file(folder, "good.json", LOCAL_CALCIUM)
    chosen = [b for b in BAD_FILES if b[0] != "conflict.json"]
    for name, body, _reason in chosen:
        (folder / name).write_text(body if isinstance(body, str) else json.dumps(body), encoding="utf-8")
    with pytest.raises(SettingsError) as exc:
        make_app(CDS_EXTRA_VALUESETS_DIR=str(folder))
    message = str(exc.value)
    assert "\n" not in message and "good.json" not in message
    shown = [name for name, _body, reason in chosen if str(folder / name) in message and reason in message]
    assert len(shown) == 5 and message.endswith(f"(and {len(chosen) - 5} more)")


def test_missing_folder_is_a_clear_error(tmp_path, make_app):
    with pytest.raises(SettingsError, match="not a folder"):
        make_app(CDS_EXTRA_VALUESETS_DIR=str(tmp_path / "nope"))


def test_shipped_files_are_package_data():
    """pyproject ships the folder (wheel installs read it via importlib.resources)."""
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    data = project["tool"]["setuptools"]["package-data"]["cds_service"]
    assert "terminology_data/valuesets/*.json" in data
    assert vs.shipped_dir().is_dir() and len(SHIPPED) > 50


# ---------------------------------------------------------------------------
# Nothing the Python tables knew is lost: the tables terminology.py held before
# it read the value sets (tests/data/terminology_before_value_sets.json) ->
# value set file, and the same meaning through the terminology API
# ---------------------------------------------------------------------------

BEFORE = json.loads((Path(__file__).parent / "data" / "terminology_before_value_sets.json").read_text())


def _group_file(group: str) -> str:
    return "condition-" + group.replace("_", "-")


AGENT_FILE = {"zoledronic_acid": "drug-zoledronic-acid", "vitamin_d": "drug-vitamin-d"}
OBSERVATION_TABLES = {  # former terminology.py constant -> value set(s)
    "DXA_BMD_CODES": ("dxa-bmd",), "DXA_STUDY_CODES": ("dxa-study",), "EGFR_CODES": ("lab-egfr",),
    "CALCIUM_TOTAL_CODES": ("lab-calcium-total",), "CALCIUM_IONIZED_CODES": ("lab-calcium-ionized",),
    "ALBUMIN_CODES": ("lab-albumin",), "VITAMIN_D_25OH_CODES": ("lab-vitamin-d-25oh",), "PTH_CODES": ("lab-pth",),
    "FALL_RISK_ASSESSMENT_CODES": ("obs-fall-risk-assessment",), "CREATININE_CODES": ("lab-creatinine",),
    "BODY_WEIGHT_CODES": ("obs-body-weight",), "BMI_CODES": ("obs-bmi",), "ALP_CODES": ("lab-alp",),
    "HCG_QUALITATIVE_CODES": ("lab-hcg-qualitative",), "HCG_QUANTITATIVE_CODES": ("lab-hcg-quantitative",),
    "PREGNANCY_STATUS_CODES": ("obs-pregnancy-status",),
}
DXA_SITE_FILE = {"LS": "ls", "FN": "fn", "TH": "th", "RADIUS": "radius", "CALCANEUS": "calcaneus"}
ORDER_TABLES = {  # (former terminology.py constant, system) -> value set
    ("DXA_CPT_CODES", CPT): "order-dxa", ("DXA_SNOMED_CODES", SNOMED): "order-dxa",
    ("BARIATRIC_SNOMED_CODES", SNOMED): "condition-bariatric",
    ("DIALYSIS_CPT_CODES", CPT): "condition-dialysis", ("DIALYSIS_SNOMED_CODES", SNOMED): "condition-dialysis",
    ("SURGICAL_CATEGORY_SNOMED", SNOMED): "procedure-surgery",
    ("MASSAGE_CPT", CPT): "order-massage", ("MASSAGE_NUCC", NUCC): "order-massage",
    ("MANUAL_THERAPY_CPT", CPT): "order-manual-therapy", ("MANUAL_THERAPY_NUCC", NUCC): "order-manual-therapy",
    ("MANUAL_THERAPY_SNOMED", SNOMED): "order-manual-therapy",
    ("SPINAL_MANIPULATION_CPT", CPT): "order-spinal-manipulation",
    ("PT_REFERRAL_SNOMED", SNOMED): "order-physical-therapy", ("PT_CPT", CPT): "order-physical-therapy",
    ("PT_NUCC", NUCC): "order-physical-therapy",
    ("CURRENT_SMOKER_SNOMED", SNOMED): "answer-current-smoker", ("NON_SMOKER_SNOMED", SNOMED): "answer-non-smoker",
    ("record._POSITIVE_SNOMED", SNOMED): "answer-positive", ("record._NEGATIVE_SNOMED", SNOMED): "answer-negative",
}
NAME_TABLES = {"DXA_NAMES": "order-dxa", "PT_NAMES": "order-physical-therapy",
               "MANUAL_THERAPY_NAMES": "order-manual-therapy", "SURGERY_NAMES": "procedure-surgery",
               "FES_I_NAMES": "obs-fes-i", "SHORT_FES_I_NAMES": "obs-short-fes-i"}
SITE_FILE = {"hip": "hip", "vertebral": "vertebral", "wrist/forearm": "wrist-forearm", "humerus": "humerus",
             "pelvis": "pelvis", "other": "unspecified"}


def _covers_icd(t, concept, prefix):
    """An ICD-10-CM prefix of the Python tables is covered when it is a leaf
    code of the value set, a root of the set is a prefix of it, or (a block
    such as "V1") the set lists its categories one by one."""
    norm = vs.normalise(ICD10CM, prefix)
    return norm in t.codes(concept, ICD10CM) or concept in t.prefix_matches(ICD10CM, norm) or any(
        r.startswith(norm) for r in t.prefixes(concept))


def test_every_code_and_name_of_the_former_python_tables_is_in_a_value_set():
    t = vs.load()
    missing = []
    for group, table in BEFORE["CONDITION_VALUE_SETS"].items():
        concept = _group_file(group)
        missing += [f"{concept}: ICD {p}" for p in table["icd_prefixes"] if not _covers_icd(t, concept, p)]
        missing += [f"{concept}: SNOMED {c}" for c in set(table["snomed"]) - t.codes(concept, SNOMED)]
        missing += [f"{concept}: name {n}" for n in table["names"] if n not in t.names(concept)]
    for name, agent in BEFORE["AGENTS"].items():
        concept = AGENT_FILE.get(name, "drug-" + name)
        onco = concept + "-oncology"
        missing += [f"{concept}: RxNorm {c}" for c in set(agent["rxnorm"]) - t.codes(concept, RXNORM)]
        missing += [f"{concept}: name {n}" for n in agent["names"] if n not in t.names(concept)]
        if agent["oncology_rxnorm"] or agent["oncology_names"]:
            missing += [f"{onco}: RxNorm {c}" for c in set(agent["oncology_rxnorm"]) - t.codes(onco, RXNORM)]
            missing += [f"{onco}: name {n}" for n in agent["oncology_names"] if n not in t.names(onco)]
    for table, concepts in OBSERVATION_TABLES.items():
        have = frozenset().union(*(t.codes(c, LOINC) for c in concepts))
        missing += [f"{table}: LOINC {c}" for c in set(BEFORE[table]) - have]
    for kind in ("t", "z"):
        for code, site in BEFORE[f"DXA_{kind.upper()}_SCORE_SITES"].items():
            if code not in t.codes(f"dxa-{kind}-score-{DXA_SITE_FILE[site]}", LOINC):
                missing.append(f"DXA_{kind.upper()}_SCORE_SITES: {code} ({site})")
    for name, concept in (("FRAX_MOF", "frax-mof"), ("FRAX_HIP", "frax-hip"), ("SMOKING_STATUS", "obs-smoking-status")):
        missing += [f"{concept}: LOINC {BEFORE[name]}"] if BEFORE[name] not in t.codes(concept, LOINC) else []
    for (table, system), concept in ORDER_TABLES.items():
        missing += [f"{table}: {c}" for c in set(BEFORE[table]) - t.codes(concept, system)]
    for table, concept in NAME_TABLES.items():
        missing += [f"{concept}: name {n}" for n in BEFORE[table] if n not in t.names(concept)]
    # fractures: every code keeps its site and its fragility status
    for code, (site, fragility) in BEFORE["_SNOMED_FRACTURES"].items():
        found = t.concepts_for(SNOMED, code)
        if "fracture-site-" + SITE_FILE[site] not in found or ("fracture-fragility" in found) != fragility:
            missing.append(f"SNOMED fracture {code}: {sorted(found)}")
    for prefix, site in BEFORE["_S_CODE_SITES"]:
        if not _covers_icd(t, "fracture-site-" + SITE_FILE[site], prefix[:3] + "." + prefix[3:]):
            missing.append(f"S-code {prefix} ({site})")
    assert missing == []


def test_the_former_python_tables_mean_the_same_through_the_terminology_api():
    """What the rules see: every former condition code lands in its group, every drug code
    is its agent, every fracture code keeps site and fragility status (issue 14 only
    added sites: rib, clavicle and ankle, and S52.6/S52.9 as wrist/forearm)."""
    from cds_service.fhir import terminology as t

    def coding(system, code):
        return {"coding": [{"system": system, "code": code}]}

    wrong = []
    for group, table in BEFORE["CONDITION_VALUE_SETS"].items():
        for code in table["snomed"]:
            if group not in t.condition_groups(coding(SNOMED, code)):
                wrong.append(f"{group}: SNOMED {code}")
        for prefix in table["icd_prefixes"]:
            code = prefix if len(prefix) >= 3 else prefix + "0"  # a block ("V1", "O1"): its first category
            if group not in t.condition_groups(coding(ICD10CM, code)):
                wrong.append(f"{group}: ICD {prefix}")
        for name in table["names"]:
            if group not in t.condition_groups({"text": f"history of {name.rstrip('*')}"}):
                wrong.append(f"{group}: name {name}")
    for agent, table in BEFORE["AGENTS"].items():
        for code in table["rxnorm"]:
            match = t.classify_medication(coding(RXNORM, code))
            if match.agents != (agent,) or match.oncology:
                wrong.append(f"{agent}: RxNorm {code} -> {match}")
        for code in table["oncology_rxnorm"]:
            match = t.classify_medication(coding(RXNORM, code))
            if match.agents != (agent,) or not match.oncology:
                wrong.append(f"{agent}: oncology RxNorm {code} -> {match}")
        for name in table["names"]:
            if agent not in t.classify_medication({"text": f"{name.rstrip('*')} tablet"}).agents:
                wrong.append(f"{agent}: name {name}")
    for code, (site, fragility) in BEFORE["_SNOMED_FRACTURES"].items():
        got = t.classify_fracture(coding(SNOMED, code))
        if got is None or (got.site, got.fragility_specific) != (site, fragility):
            wrong.append(f"SNOMED fracture {code}: {got}")
    for prefix, site in BEFORE["_S_CODE_SITES"]:
        got = t.classify_fracture(coding(ICD10CM, prefix[:3] + "." + prefix[3:] + "1A"))
        if got is None or (got.site, got.fragility_specific) != (site, False):
            wrong.append(f"S-code {prefix}: {got}")
    for char, site in BEFORE["_M80_SITE"].items():
        got = t.classify_fracture(coding(ICD10CM, f"M80.0{char}XA"))
        if got is None or (got.site, got.fragility_specific) != (site, True):
            wrong.append(f"M80.0{char}: {got}")
    assert wrong == []
