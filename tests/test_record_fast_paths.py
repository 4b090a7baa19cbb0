"""The record builder's shortcuts change no record.

build_record remembers what a code says (by its codings and text), the value
sets of each concept, lab unit factors and name searches, and builds its
record types without the frozen guard per field. Every fixture and every
real-world chart is built with all of that warm (after the whole corpus) and
with none of it (each answer computed afresh, as before the shortcuts): the
records must be equal, field by field."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest

from cds_service import fixtures as fx
from cds_service import record
from cds_service.fhir import deferred, patient_binding
from cds_service.fhir import terminology as t

TODAY = dt.date(2026, 11, 30)


def _charts():
    for name in fx.patient_names():
        bundle = fx.load_patient(name, today=TODAY)
        prefetch = fx.prefetch_from_bundle(bundle)
        pid = (prefetch.get("patient") or {}).get("id") or "none"
        yield name, prefetch, pid, fx.drafts_from_bundle(bundle)
    for path in fx.realworld_paths("synthea"):
        resources = fx.load_realworld(path, today=TODAY)
        pid = next(r["id"] for r in resources if r["resourceType"] == "Patient")
        prefetch = {"all": {"resourceType": "Bundle", "type": "searchset",
                            "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources]}}
        yield path.name, prefetch, pid, []


@pytest.fixture(scope="module")
def charts():
    return list(_charts())


def _build(prefetch, pid, drafts):
    return record.build_record(prefetch, drafts=drafts, today=TODAY, patient_id=pid,
                               fhir_server="https://fhir.example.org/r4")


def _exposure_by_parts(agent, events, today):
    """record._exposure as it was before its one pass: each field by its own walk."""
    interval = t.AGENTS[agent].dosing_interval_days
    doses = sorted({e.dose_date for e in events if e.dose_date and e.resource_type != "MedicationRequest"})
    requests = [e for e in events if e.resource_type == "MedicationRequest"]
    last_dose = doses[-1] if doses else max((e.start for e in requests if e.start), default=None)
    active = any(e.status in ("active", "on-hold") and e.resource_type != "MedicationAdministration"
                 and (e.end is None or e.end >= today) for e in events)
    given = doses or (sorted({e.start for e in requests if e.status == "completed" and e.start})
                      if interval > 7 else [])
    if given and (today - given[-1]).days <= interval and interval > 1:
        active = True
    latest = max(events, key=lambda e: e.start or e.dose_date or dt.date.min)
    stopped = None
    if not active:
        ends = [e.end or e.dose_date or e.start for e in events if e.status in ("stopped", "completed")]
        stopped = max((d for d in ends if d), default=None)
    return record.AgentExposure(
        agent=agent, drug_class=t.AGENTS[agent].drug_class, active=active, status=latest.status,
        start=min((e.start or e.dose_date for e in events if e.start or e.dose_date), default=None),
        last_dose=last_dose, stopped=stopped, dose_count=len(doses),
        exposure_days=record._merged_days(record._event_intervals(events, today)),
        oncology_only=all(e.oncology for e in events), events=events,
        single_orders=tuple(sorted({e.start for e in requests if e.status == "completed" and e.start
                                    and (e.end is None or (e.end - e.start).days <= interval)})),
    )


def _bundle_resources(bundle, out):
    """(the Bundle it is in, resource) of each entry of a Bundle, a Bundle in an entry walked
    as its own, entries kept as text parsed; raises on a malformed entry, what came before in out."""
    for entry in bundle.get("entry") or ():
        if type(entry) is deferred.Deferred:
            entry = deferred.decode(entry)
        pairs = []
        nested = record._collect_entry(entry, pairs, nested_bundles=False)
        if nested is not None:
            _bundle_resources(nested, out)
        out.extend((bundle, resource) for _, resource in pairs)


def _build_record_in_three_walks(prefetch, *, drafts=(), today, patient_id=None, fhir_server=None,
                                 selections=None, draft_orders=None, settings=record.DEFAULT):
    """record.build_record as it was before its one walk: every entry of every prefetch
    value collected with the Bundle it is in, then each bound (its `urn:` references in
    that Bundle) and read."""
    values = []
    for value in (prefetch or {}).values():
        pairs = []
        if not (isinstance(value, dict) and value.get("resourceType") == "Bundle"):
            values.append(([(None, value)] if value is not None else [], False))
            continue
        try:
            _bundle_resources(value, pairs)
            values.append((pairs, False))
        except Exception:  # noqa: BLE001
            values.append((pairs, True))
    binding = None
    if patient_id is not None:
        binding = record.PatientBinding(patient_id, fhir_server=fhir_server)
    builder = record._Builder(today, settings, binding)
    builder.skipped.extend("Bundle/?" for _, failed in values if failed)
    if selections is not None and not isinstance(selections, (list, tuple)):
        selections = None
    for pairs, _ in values:
        for bundle, resource in pairs:
            if binding is not None:
                binding.bundle = bundle
            builder.add(resource)
    return builder.finish(drafts, selections, draft_orders)


def _without_shortcuts(monkeypatch):
    """Every remembered answer computed afresh, each walk done the plain way, and the
    dataclasses' own __init__."""
    monkeypatch.setattr(record, "build_record", _build_record_in_three_walks)
    monkeypatch.setattr(record, "_exposure", _exposure_by_parts)
    monkeypatch.setattr(record, "_replace", dataclasses.replace)
    monkeypatch.setattr(record, "_quantity", record._any_quantity)
    monkeypatch.setattr(record, "parse_date", lambda value: record._parse_date(value) if isinstance(value, str) else None)
    monkeypatch.setattr(record, "_DATES", {})  # and none remembered from before
    monkeypatch.setattr(record._CodeMemo, "reading", lambda self, read, concept: read(concept))
    monkeypatch.setattr(record._CodeMemo, "names_in", lambda self, rtype, test, text: test(text))
    monkeypatch.setattr(record, "_plain_key", lambda rtype, concepts: None)
    monkeypatch.setattr(record._CodeMemo, "_by_code", lambda self, code: None)
    monkeypatch.setattr(record, "_memo", [])  # a code memo of its own: no plan by code kept from before
    monkeypatch.setattr(record, "_BOUND_BY_SUBJECT", frozenset())
    monkeypatch.setattr(record, "_oldest_first", lambda items: sorted(items, key=record._by_date))
    monkeypatch.setattr(record, "_sorted_labs", lambda name, values: sorted(values, key=record._lab_order))
    monkeypatch.setattr(record._Builder, "_lab_value",
                        lambda self, value_set, value, unit, concept: record.lab_value(value_set, value, unit, concept))
    monkeypatch.setattr(record, "_value_plan", record._plan_values)
    monkeypatch.setattr(record, "_usual_result", lambda plans: None)
    monkeypatch.setattr(record, "_has_fracture_set", lambda found: any(v.startswith(record.FRACTURE_SETS) for v in found))
    for cls in (record.BmdScore, record.Frax, record.Fracture, record.ConditionHit, record.Lab, record.FallConcern,
                record.Surgery, record.CareEvent, record.MedEvent, record.AgentExposure, record.BinaryResult,
                record.DraftOrder, record.PatientRecord):
        monkeypatch.setattr(cls, "__init__", dataclasses.dataclass(frozen=True)(
            type(cls.__name__, (), {"__annotations__": cls.__annotations__,
                                    **{f.name: f.default for f in dataclasses.fields(cls)
                                       if f.default is not dataclasses.MISSING}})).__init__)


def test_every_record_is_the_same_without_the_shortcuts(charts, monkeypatch):
    for _, prefetch, pid, drafts in charts:  # warm every memo with the whole corpus first
        _build(prefetch, pid, drafts)
    warm = [_build(prefetch, pid, drafts) for _, prefetch, pid, drafts in charts]
    with monkeypatch.context() as patched:
        _without_shortcuts(patched)
        cold = [_build(prefetch, pid, drafts) for _, prefetch, pid, drafts in charts]
    assert len(warm) == len(cold) > 400
    for (name, *_), fast, slow in zip(charts, warm, cold, strict=True):
        for field in dataclasses.fields(record.PatientRecord):
            assert getattr(fast, field.name) == getattr(slow, field.name), (name, field.name)
        assert repr(fast) == repr(slow), name  # 1 == 1.0 to ==, not to repr


def _concepts(charts):
    for _, prefetch, _, _ in charts:
        for value in prefetch.values():
            for entry in (value or {}).get("entry") or () if isinstance(value, dict) else ():
                res = entry["resource"]
                if res.get("resourceType") in ("Condition", "Procedure") and isinstance(res.get("code"), dict):
                    yield res["resourceType"], res["code"]


def test_a_code_is_read_by_its_codings_and_text_only(charts):
    """_CodeMemo.reading keys a code by its codings' system and code and its text: what
    else a CodeableConcept carries (ids, extensions, versions) must not change a reading."""
    seen = set()
    for rtype, concept in _concepts(charts):
        key = json.dumps(concept, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        dressed = {**concept, "id": "c1", "extension": [{"url": "http://example.org/x", "valueString": "hip"}],
                   "coding": [{**c, "version": "2024", "userSelected": True, "id": "x"} if isinstance(c, dict) else c
                              for c in concept.get("coding") or ()]}
        assert record._concept_key(dressed) == record._concept_key(concept)
        read = record._condition_code if rtype == "Condition" else record._procedure_code
        assert read(dressed) == read(concept), concept
    assert len(seen) > 100


def test_record_types_keep_the_dataclass_behaviour():
    lab = record.Lab("calcium", 9.1, "mg/dL", TODAY, "Observation/1")
    assert (lab.high, lab.flag, lab.comparator) == (None, "", "")
    assert lab == record.Lab(name="calcium", value=9.1, unit="mg/dL", date=TODAY, ref="Observation/1")
    assert hash(lab) == hash(record.Lab("calcium", 9.1, "mg/dL", TODAY, "Observation/1", None, "", ""))
    assert dataclasses.replace(lab, flag="H").flag == "H" and lab.flag == ""
    with pytest.raises(dataclasses.FrozenInstanceError):
        lab.value = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        record.Lab("calcium", 9.1)  # type: ignore[call-arg]
    assert repr(lab).startswith("Lab(name='calcium', value=9.1,")
    flagged = record._replace(lab, flag="H")
    assert repr(flagged) == repr(dataclasses.replace(lab, flag="H")) and lab.flag == ""
    with pytest.raises(dataclasses.FrozenInstanceError):
        flagged.flag = "L"  # type: ignore[misc]


def test_a_lab_unit_factor_is_what_convert_gives():
    codes = record._codes()
    for value_set, unit, value in (("lab-calcium-total", "mmol/L", 2.37), ("lab-vitamin-d-25oh", "nmol/L", 61.3),
                                   ("lab-creatinine", "umol/L", 88.4), ("lab-albumin", "g/L", 38.0),
                                   ("lab-calcium-total", "furlongs", 1.0), ("lab-calcium-total", "[ ]", 9.0)):
        factor = codes.factor(value_set, unit)
        expected = t.convert(value_set, value, unit)
        assert (None if factor is None else value * factor) == expected, (value_set, unit)


def _prefetch(*resources):
    return {"patient": {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1950-01-01"},
            "all": {"resourceType": "Bundle", "type": "searchset",
                    "entry": [{"resource": {**r, "subject": {"reference": "Patient/p1"}}} for r in resources]}}


def test_each_component_of_an_observation_is_read_by_its_own_codes():
    """The reader reuses the value sets `wanted` found for each concept of an
    Observation: a component's must be its own, not the panel's."""
    panel = {"resourceType": "Observation", "id": "dxa", "status": "final", "effectiveDateTime": "2025-03-01",
             "code": {"coding": [{"system": "http://example.org/local", "code": "DXA-PANEL"}]},
             "component": [{"code": {"coding": [{"system": t.LOINC, "code": "38267-1"}]},
                            "valueQuantity": {"value": -2.7}},
                           {"code": {"coding": [{"system": t.LOINC, "code": "38263-0"}]},
                            "valueQuantity": {"value": -1.9}}]}
    rec = record.build_record(_prefetch(panel), today=TODAY, patient_id="p1")
    assert [(b.site, b.kind, b.value) for b in rec.bmd] == [("LS", "T", -2.7), ("FN", "T", -1.9)]


def test_a_remembered_reading_tells_the_same_code_apart_by_its_text():
    """One local code, two texts: what the code says is remembered by codings and text
    together, so the second resource is not read as the first."""
    def proc(pid, text):
        return {"resourceType": "Procedure", "id": pid, "status": "completed", "performedDateTime": "2025-01-02",
                "code": {"coding": [{"system": "http://example.org/local", "code": "P-1"}], "text": text}}

    def cond(cid, text):
        return {"resourceType": "Condition", "id": cid, "onsetDateTime": "2025-01-02",
                "code": {"coding": [{"system": "http://example.org/local", "code": "C-1"}], "text": text}}

    for first, second in ((0, 1), (1, 0)):  # either one read first
        procs = [proc("a", "Total hip arthroplasty"), proc("b", "Venous blood draw")]
        conds = [cond("c", "Primary hyperparathyroidism"), cond("d", "Seasonal allergy")]
        rec = record.build_record(_prefetch(procs[first], procs[second], conds[first], conds[second]),
                                  today=TODAY, patient_id="p1")
        assert [s.ref for s in rec.surgeries] == ["Procedure/a"]
        assert [h.ref for hits in rec.conditions.values() for h in hits] == ["Condition/c"]


def _fast_and_slow(monkeypatch, *resources, patient="p1"):
    """The record of these resources built warm (a first build fills the plans and memos)
    and without any shortcut: they must be equal. Returns the warm one."""
    prefetch = _prefetch(*resources)
    record.build_record(prefetch, today=TODAY, patient_id=patient)
    fast = record.build_record(prefetch, today=TODAY, patient_id=patient)
    with monkeypatch.context() as patched:
        _without_shortcuts(patched)
        slow = record.build_record(prefetch, today=TODAY, patient_id=patient)
    assert repr(fast) == repr(slow)
    return fast


def _obs(oid, code, day="2026-01-10", display="", **fields):
    coding = {"system": t.LOINC, "code": code, **({"display": display} if display else {})}
    return {"resourceType": "Observation", "id": oid, "status": "final", "effectiveDateTime": day,
            "code": {"coding": [coding]}, **fields}


def _qty(value, unit=None, **more):
    return {"valueQuantity": {"value": value, **({"unit": unit} if unit else {}), **more}}


def test_one_code_many_results_each_read_on_its_own(monkeypatch):
    """The second and later results of a code take its plan: units, comparators, statuses,
    dates and subjects are still each result's own."""
    calcium, egfr = "17861-6", "33914-3"
    rec = _fast_and_slow(
        monkeypatch,
        _obs("ca1", calcium, **_qty(9.1, "mg/dL")),
        _obs("ca2", calcium, "2026-01-11", **_qty(2.3, "mmol/L")),
        _obs("ca3", calcium, "2026-01-12", **_qty(9.0, "furlongs")),           # unit not known: not read, counted
        _obs("ca4", calcium, "2026-01-13", status="preliminary", **_qty(9.5, "mg/dL")),
        _obs("ca5", calcium, "2027-06-01", **_qty(9.6, "mg/dL")),             # future: ignored
        _obs("ca6", calcium, "2026-01-14", **_qty(2.4)),                      # no unit: mmol/L by its value
        _obs("ca7", calcium, "2026-01-15", valueQuantity={"unit": "mg/dL"}),  # no number: nothing
        _obs("ca8", calcium, "2026-01-16", **_qty(55.0, "mg/dL")),            # implausible: ignored
        _obs("ca9", calcium, "2026-01-17", display="Calcium [Mass/volume] in Serum", **_qty(8.9, "mg/dL")),
        _obs("e1", egfr, **_qty(60, comparator=">")),
        _obs("e2", egfr, "2026-01-11", **_qty(45, comparator="<")),            # "<45" could be 20: no reading
        _obs("e3", egfr, "2026-01-12", **_qty(20, comparator="<")),
        _obs("e4", egfr, "2026-01-13", valueString="> 90 mL/min/1.73m2"),
        _obs("e5", egfr, "2026-01-14", valueInteger=52),
    )
    assert [(lab.ref, lab.value, lab.comparator) for lab in rec.labs["calcium"]] == [
        ("Observation/ca1", 9.1, ""), ("Observation/ca2", 9.22, ""), ("Observation/ca6", 9.62, ""),
        ("Observation/ca9", 8.9, "")]
    assert [(lab.ref, lab.value, lab.comparator) for lab in rec.labs["egfr"]] == [
        ("Observation/e1", 60.0, ">"), ("Observation/e3", 20.0, "<"), ("Observation/e4", 90.0, ">"),
        ("Observation/e5", 52.0, "")]
    # A unit the set does not know is no reading, and counted (review 10), on both paths.
    assert dict(rec.ignored) == {"Observation/ca3": "unreadable-value", "Observation/ca5": "future-date",
                                 "Observation/ca8": "implausible-value"}


def test_another_patients_result_of_a_known_code_stays_ignored(monkeypatch):
    ours = _obs("ca1", "17861-6", **_qty(9.1, "mg/dL"))
    theirs = {**_obs("ca2", "17861-6", **_qty(7.0, "mg/dL")), "subject": {"reference": "Patient/p2"}}
    prefetch = _prefetch(ours)
    prefetch["other"] = theirs  # _prefetch would give it our subject
    for _ in range(2):  # the second time with the code's plan warm
        rec = record.build_record(prefetch, today=TODAY, patient_id="p1")
        assert [lab.ref for lab in rec.labs["calcium"]] == ["Observation/ca1"]
        assert rec.ignored == (("Observation/ca2", "foreign-patient"),)


def test_each_kind_of_result_with_and_without_a_number(monkeypatch):
    """Every kind _observation_value reads, with a number and without one (a kind that needs
    one reads nothing then); the same codes again in components of a local panel."""
    bare = {"valueQuantity": {"unit": "%"}}
    results = [
        _obs("t1", "38267-1", **_qty(-2.6)), _obs("t2", "38267-1", "2026-02-01", **bare),
        _obs("d1", "24701-5", "2026-03-01", **bare),
        _obs("f1", "90265-0", **_qty(22, "%")), _obs("f2", "90265-0", "2026-02-02", **bare),
        _obs("h1", "19080-1", **_qty(30, "m[IU]/mL")), _obs("h2", "19080-1", "2026-02-03", **bare),
        _obs("q1", "2106-3", "2026-02-04", valueCodeableConcept={"text": "Negative"}),
        _obs("s1", "72166-2", valueCodeableConcept={"text": "Never smoker"}),
        _obs("r1", "57254-5", valueBoolean=True),
        _obs("x1", "11580-8", **_qty(2.1, "m[IU]/L")), _obs("x2", "3016-3", "2026-03-02", **bare),
        _obs("p1", "1751-7", "2026-01-10", **_qty(3.9, "g/dL")),
    ]
    rec = _fast_and_slow(monkeypatch, *results)
    assert [(b.ref, b.value) for b in rec.bmd] == [("Observation/t1", -2.6)]
    assert rec.dxa_dates == (dt.date(2026, 1, 10), dt.date(2026, 3, 1))
    assert [(f.ref, f.kind, f.percent) for f in rec.frax] == [("Observation/f1", "mof", 22.0)]
    assert [(p.ref, p.positive) for p in rec.pregnancy_tests] == [("Observation/h1", True),
                                                                   ("Observation/q1", False)]
    assert (rec.smoker, rec.smoking_ref) == (False, "Observation/s1")
    assert [(f.ref, f.positive) for f in rec.fall_risk] == [("Observation/r1", True)]
    assert rec.tests_done == (("tsh", dt.date(2026, 1, 10), "Observation/x1"),)
    assert [lab.ref for lab in rec.labs["albumin"]] == ["Observation/p1"]
    panel = {"resourceType": "Observation", "id": "panel", "status": "final", "effectiveDateTime": "2026-04-01",
             "code": {"coding": [{"system": "http://example.org/local", "code": "PANEL"}]},
             "component": [{"code": r["code"], **{k: v for k, v in r.items() if k.startswith("value")}}
                           for r in results]}
    again = _fast_and_slow(monkeypatch, *results, panel)
    assert [b.ref for b in again.bmd] == ["Observation/t1", "Observation/panel"]
    assert [f.ref for f in again.frax] == ["Observation/f1", "Observation/panel"]
    assert again.tests_done == (("tsh", dt.date(2026, 4, 1), "Observation/panel"),)


def test_the_kinds_of_result_are_disjoint():
    """_value_kind answers by the first test that holds; _observation_value once tried each
    value set against every kind in turn. The same answer needs disjoint kinds."""
    named = [set(record.DXA_RESULT_SETS), set(t.FRAX_SETS), set(record.LAB_SETS), set(record.PREGNANCY_TEST_SETS),
             {record.HCG_QUANTITATIVE_SET}, {record.SMOKING_SET}, {record.FALL_RISK_SET}, set(record.FES_I_SETS),
             set(record.TEST_DONE_SETS)]
    every = [v for sets in named for v in sets]
    assert len(every) == len(set(every))
    assert not [v for v in every if v.startswith((record.T_SCORE_SETS, record.Z_SCORE_SETS))]


def test_a_value_plan_takes_the_first_set_that_reads_the_result():
    plan = record._plan_values(frozenset({"lab-tsh", "frax-mof", "fracture-site-hip", "dxa-bmd"}))
    assert plan.with_number == (record._DXA, "dxa-bmd")  # sorted first, and read with or without a number
    assert plan.without_number == (record._DXA, "dxa-bmd")
    plan = record._plan_values(frozenset({"lab-tsh", "frax-mof", "fracture-site-hip"}))
    assert plan.with_number == (record._FRAX, "frax-mof") and plan.without_number == (record._TEST_DONE, "lab-tsh")
    plan = record._plan_values(frozenset({"fracture-site-hip", "dxa-t-score-other"}))
    assert plan.with_number == (record._BMD, "dxa-t-score-other") and plan.without_number == (None, "")
    assert not plan.egfr and record._plan_values(frozenset({"lab-egfr"})).egfr


def test_only_the_ranked_labs_are_ranked_on_one_day():
    """_sorted_labs sorts every other lab by date alone: its same-day rank must be 0."""
    for name in {*record.LAB_LABELS, *record.LAB_SETS.values()}:
        lab = record.Lab(name, 42.0, "u", TODAY, "Observation/1")
        assert (record._same_day_rank(lab) != 0) == (name in record._RANKED_SAME_DAY), name


def test_results_are_sorted_undated_first_then_by_date_ties_as_given(monkeypatch):
    calcium, vitamin_d = "17861-6", "62292-8"
    rec = _fast_and_slow(
        monkeypatch,
        _obs("c1", calcium, "2026-02-01", **_qty(9.4, "mg/dL")), _obs("c2", calcium, "2026-01-01", **_qty(9.1, "mg/dL")),
        {**_obs("c3", calcium, **_qty(9.0, "mg/dL")), "effectiveDateTime": "unknown"},
        _obs("c4", calcium, "2026-02-01", **_qty(8.8, "mg/dL")),
        _obs("d1", vitamin_d, "2026-02-01", **_qty(31, "ng/mL")), _obs("d2", vitamin_d, "2026-02-01", **_qty(28, "ng/mL")),
        _obs("t1", "38267-1", "2026-02-01", **_qty(-2.1)), _obs("t2", "38267-1", "2025-02-01", **_qty(-2.0)),
    )
    assert [lab.ref[12:] for lab in rec.labs["calcium"]] == ["c3", "c2", "c1", "c4"]
    assert [lab.ref[12:] for lab in rec.labs["vitamin_d"]] == ["d2", "d1"]  # the highest (the total) last
    assert [b.ref[12:] for b in rec.bmd] == ["t2", "t1"]


def test_the_usual_subject_shortcut_binds_as_the_binding_does(monkeypatch):
    """add() takes subject "Patient/<id>" itself; every other subject still goes to
    PatientBinding (history, absolute, urn, foreign, missing, malformed, a Patient's id)."""
    subjects = {"a": {"reference": "Patient/p1"}, "b": {"reference": "Patient/p1/_history/3"},
                "c": {"reference": "https://fhir.example.org/r4/Patient/p1"}, "d": {"reference": "Patient/p2"},
                "e": {"reference": "urn:uuid:0b8e"}, "f": None, "g": {"reference": 7}, "h": "Patient/p1",
                "i": {"reference": " Patient/p1 "}, "j": {"display": "Patient/p1"}}
    entries = [{"resource": {**_obs(oid, "17861-6", **_qty(9.1, "mg/dL")), "subject": subject}}
               for oid, subject in subjects.items()]
    entries.append({"fullUrl": "urn:uuid:0b8e", "resource": {"resourceType": "Patient", "id": "p1"}})
    entries.append({"resource": {"resourceType": "Patient", "id": "p2"}})
    entries.append({"resource": {"resourceType": "Condition", "id": "k", "patient": {"reference": "Patient/p1"},
                                 "code": {"coding": [{"system": t.ICD10CM, "code": "M81.0"}]}}})
    prefetch = {"all": {"resourceType": "Bundle", "type": "searchset", "entry": entries}}

    def build():
        return record.build_record(prefetch, today=TODAY, patient_id="p1", fhir_server="https://fhir.example.org/r4")

    build()
    fast = build()
    with monkeypatch.context() as patched:
        _without_shortcuts(patched)
        slow = build()
    assert repr(fast) == repr(slow)
    assert [lab.ref[12:] for lab in fast.labs["calcium"]] == ["a", "b", "c", "e", "i"]
    assert dict(fast.ignored) == {"Observation/d": "foreign-patient", "Observation/f": "no-subject",
                                  "Observation/g": "no-subject", "Observation/h": "no-subject",
                                  "Observation/j": "no-subject", "Patient/p2": "foreign-patient",
                                  "Condition/k": "no-subject"}


def test_a_supply_end_past_the_last_date_skips_the_order(monkeypatch):
    """_supply_end counts days by ordinal: an order whose supply would end after date.max
    is unreadable (skipped), as it was with a timedelta."""
    def order(oid, start):
        return {"resourceType": "MedicationRequest", "id": oid, "status": "completed", "intent": "order",
                "authoredOn": "2025-01-02",
                "medicationCodeableConcept": {"coding": [{"system": t.RXNORM, "code": "904431"}],
                                              "text": "alendronic acid 70 MG Oral Tablet"},
                "dosageInstruction": [{"timing": {"repeat": {"boundsPeriod": {"start": start}}}}],
                "dispenseRequest": {"expectedSupplyDuration": {"value": 90, "unit": "days", "code": "d"},
                                    "numberOfRepeatsAllowed": 3}}
    rec = _fast_and_slow(monkeypatch, order("m1", "2025-01-02"), order("m2", "9999-12-01"))
    assert rec.skipped == ("MedicationRequest/m2",)
    assert [(e.ref, e.supply_end) for e in rec.medications["alendronate"].events] == [
        ("MedicationRequest/m1", dt.date(2025, 12, 28))]


def test_the_code_memo_stays_within_its_bound_and_still_answers_right(charts, monkeypatch):
    """Each of the memo's caches is emptied when full (requests carry arbitrary codes):
    with room for only two answers each, every record is still the one built warm."""
    warm = [_build(prefetch, pid, drafts) for _, prefetch, pid, drafts in charts[:60]]
    monkeypatch.setattr(record._CodeMemo, "LIMIT", 2)
    record._memo.clear()  # a new memo, filled under the small bound
    try:
        small = [_build(prefetch, pid, drafts) for _, prefetch, pid, drafts in charts[:60]]
        memo = record._codes()
        for cache in (memo.memo, memo.readings, memo.names, memo.factors, memo.plans, memo.by_code):
            assert len(cache) <= 2
    finally:
        record._memo.clear()
    assert [repr(r) for r in small] == [repr(r) for r in warm]


def test_an_exposure_in_one_pass_is_the_exposure_field_by_field():
    """_exposure walks an agent's events once; _exposure_by_parts walks them per field. Random
    events (fixed seed) with the cases each field turns on: undated events, ties on the latest
    date, completed orders of drugs given at intervals, doses within an interval, oncology mixes."""
    import random
    rng = random.Random(15)
    days = [None, TODAY - dt.timedelta(days=400), TODAY - dt.timedelta(days=100), TODAY - dt.timedelta(days=20),
            TODAY, TODAY + dt.timedelta(days=30)]
    types = ("MedicationRequest", "MedicationAdministration", "MedicationStatement")
    statuses = ("active", "on-hold", "completed", "stopped", "unknown", "cancelled")
    for agent in ("denosumab", "alendronate", "corticosteroid", "zoledronic_acid"):
        for n in range(1, 400):
            events = tuple(record.MedEvent(agent, t.AGENTS[agent].drug_class, rng.choice(types), f"X/{i}",
                                           rng.choice(statuses), rng.choice(days), rng.choice(days),
                                           rng.choice(days), rng.random() < 0.3)
                           for i in range(1 + n % 7))
            assert record._exposure(agent, events, TODAY) == _exposure_by_parts(agent, events, TODAY), events


def test_odd_bundle_entries_are_collected_as_one_by_one(monkeypatch):
    """_Builder.add_value reads the usual entry itself: every other shape goes to _collect_entry
    as before (outcomes, search that is no object, nested Bundles, entries without a resource)."""
    ca = _obs("ca1", "17861-6", **_qty(9.1, "mg/dL"), subject={"reference": "Patient/p1"})
    nested = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"fullUrl": "urn:uuid:n1", "resource": {**ca, "id": "n1"}}]}
    entries = [{"fullUrl": "https://x/Observation/ca1", "resource": ca, "search": {"mode": "match"}},
               {"resource": {**ca, "id": "o1"}, "search": {"mode": "outcome"}},
               {"resource": {**ca, "id": "s1"}, "search": {}},
               {"resource": nested}, {"resource": None}, {"fullUrl": "urn:uuid:x"}, ["not", "an", "entry"],
               {"resource": {**ca, "id": "s3"}, "search": {"mode": "include"}}]
    read = ["Observation/ca1", "Observation/s1", "Observation/n1", "Observation/s3"]
    # search.get on a string fails the rest of the Bundle (entries before it kept), as before
    for tail, labs in (([], read), ([{"resource": {**ca, "id": "s2"}, "search": "match"}, entries[0]], read)):
        prefetch = {"patient": {"resourceType": "Patient", "id": "p1"},
                    "all": {"resourceType": "Bundle", "type": "searchset", "entry": entries + tail}}
        fast = record.build_record(prefetch, today=TODAY, patient_id="p1")
        with monkeypatch.context() as patched:
            _without_shortcuts(patched)
            slow = record.build_record(prefetch, today=TODAY, patient_id="p1")
        assert repr(fast) == repr(slow)
        assert [lab.ref for lab in fast.labs["calcium"]] == labs
        assert ("Bundle/?" in fast.skipped) == bool(tail)


def _fast_and_slow_prefetch(monkeypatch, prefetch, patient="p1", **kw):
    """build_record in one walk and in three (no shortcut at all): the same record."""
    fast = record.build_record(prefetch, today=TODAY, patient_id=patient, **kw)
    with monkeypatch.context() as patched:
        _without_shortcuts(patched)
        slow = record.build_record(prefetch, today=TODAY, patient_id=patient, **kw)
    assert repr(fast) == repr(slow)
    return fast


def test_urn_references_bind_within_their_own_bundle_as_in_three_walks(monkeypatch):
    """One walk binds each resource as it meets it; a `urn:` reference still sees every
    alias of the patient in its own Bundle, before or after it, and none of another Bundle
    (another prefetch value, or the Bundle around or within its own). A fullUrl naming
    the patient and something else in one Bundle is no alias."""
    def ca(oid, ref):
        return {"resource": {**_obs(oid, "17861-6", **_qty(9.1, "mg/dL")), "subject": {"reference": ref}}}

    patient = {"resourceType": "Patient", "id": "p1"}
    nested = {"resourceType": "Bundle", "type": "collection",
              "entry": [ca("n1", "urn:uuid:late"), ca("n2", "urn:uuid:inner"),
                        {"fullUrl": "urn:uuid:inner", "resource": patient}]}
    prefetch = {
        "a": {"resourceType": "Bundle", "type": "searchset",
              "entry": [ca("a1", "urn:uuid:late"), ca("a2", "urn:uuid:other"), ca("a3", "urn:uuid:next"),
                        ca("a4", "Patient/p1"), {"fullUrl": "urn:uuid:late", "resource": patient},
                        {"resource": nested}, ca("a5", "urn:uuid:inner"), ca("a6", "urn:uuid:late")]},
        "b": {"resourceType": "Bundle", "type": "collection",
              "entry": [ca("b1", "urn:uuid:late"), {"fullUrl": "urn:uuid:next", "resource": patient},
                        {"fullUrl": "urn:uuid:p2", "resource": {"resourceType": "Patient", "id": "p2"}},
                        ca("b2", "urn:uuid:p2"), ca("b3", "urn:uuid:next")]},
        "c": {"resourceType": "Bundle", "type": "collection",
              "entry": [{"fullUrl": "urn:uuid:twice", "resource": patient}, ca("c1", "urn:uuid:twice"),
                        {"fullUrl": "urn:uuid:twice", "resource": {"resourceType": "Patient", "id": "p2"}}]},
    }
    rec = _fast_and_slow_prefetch(monkeypatch, prefetch)
    assert [lab.ref[12:] for lab in rec.labs["calcium"]] == ["a1", "a4", "n2", "a6", "b3"]
    assert dict(rec.ignored) == {
        "Observation/a2": "unresolved-reference", "Observation/a3": "unresolved-reference",
        "Observation/n1": "unresolved-reference", "Observation/a5": "unresolved-reference",
        "Observation/b1": "unresolved-reference", "Patient/p2": "foreign-patient",
        # a urn that is another Patient's fullUrl (alone, or beside the patient's) names them
        "Observation/b2": "foreign-patient", "Observation/c1": "foreign-patient"}


def test_aliases_are_looked_for_only_for_a_urn_reference(monkeypatch):
    """Without a `urn:` reference the entries are walked once: no search for aliases."""
    searched = []
    real = patient_binding.patient_aliases
    monkeypatch.setattr(patient_binding, "patient_aliases",
                        lambda pairs, pid: searched.append(pid) or real(pairs, pid))
    plain = _prefetch(_obs("ca1", "17861-6", **_qty(9.1, "mg/dL")))
    record.build_record(plain, today=TODAY, patient_id="p1")
    assert searched == []
    plain["all"]["entry"].append({"resource": {**_obs("ca2", "17861-6", **_qty(9.2, "mg/dL")),
                                               "subject": {"reference": "urn:uuid:x"}}})
    plain["all"]["entry"].append({"resource": {**_obs("ca3", "17861-6", **_qty(9.3, "mg/dL")),
                                               "subject": {"reference": "urn:uuid:y"}}})
    record.build_record(plain, today=TODAY, patient_id="p1")
    assert searched == ["p1"]  # once, at the first


def test_malformed_bundles_count_before_the_resources_skips_in_one_walk(monkeypatch):
    """A malformed Bundle met after resources were skipped still puts its "Bundle/?" first,
    once per value, with the entries before its fault read."""
    unreadable = {"resourceType": "MedicationRequest", "id": "x1", "status": "completed", "intent": "order",
                  "medicationCodeableConcept": {"coding": [{"system": t.RXNORM, "code": "904431"}]},
                  "dispenseRequest": "a supply that is no object"}
    good = {"resource": {**_obs("ca1", "17861-6", **_qty(9.1, "mg/dL")), "subject": {"reference": "Patient/p1"}}}
    nested_bad = {"resource": {"resourceType": "Bundle", "entry": [
        {"resource": {**good["resource"], "id": "n1"}}, {"resource": {"resourceType": "Observation"}, "search": 5},
        {"resource": {**good["resource"], "id": "n2"}}]}}
    prefetch = {
        "patient": {"resourceType": "Patient", "id": "p1"},
        "first": {"resourceType": "Bundle", "entry": [{"resource": {**unreadable, "subject": {"reference": "Patient/p1"}}}]},
        "number": {"resourceType": "Bundle", "entry": 7},
        "nested": {"resourceType": "Bundle", "entry": [good, nested_bad, {"resource": {**good["resource"], "id": "n3"}}]},
        "text": {"resourceType": "Bundle", "entry": "ab"},
        "list": [good],
        "types": {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": 5, "id": "t"}},
                                                      {"resource": {"id": "u"}}]},
    }
    rec = _fast_and_slow_prefetch(monkeypatch, prefetch)
    assert rec.skipped == ("Bundle/?", "Bundle/?", "MedicationRequest/x1", "?/?", "?/?", "?/?", "?/?", "?/?")
    assert [lab.ref[12:] for lab in rec.labs["calcium"]] == ["ca1", "n1"]


def _plain_by_loop(concept):
    """record._plain as it was before it read one coding without a loop."""
    if concept is None:
        return None
    if type(concept) is not dict:
        return record._NOT_PLAIN
    codings = concept.get("coding")
    key = (concept.get("text"),)
    if codings is not None:
        if type(codings) is not list:
            return record._NOT_PLAIN
        for coding in codings:
            if type(coding) is not dict:
                return record._NOT_PLAIN
            key += (coding.get("system"), coding.get("code"), coding.get("display"))
    return key if record._PLAIN_PARTS.issuperset(map(type, key)) else record._NOT_PLAIN


def test_a_plain_key_of_one_coding_is_the_loops(charts):
    odd = [None, [], "x", {}, {"coding": []}, {"coding": [None]}, {"coding": ["x"]}, {"coding": {"code": "1"}},
           {"coding": [{"code": 1}]}, {"coding": [{"code": "1"}, None]}, {"text": 5, "coding": [{"code": "1"}]},
           {"coding": [{"system": "s", "code": "c", "display": "d"}, {"code": "e"}], "text": "t"}]
    concepts = odd + [concept for _, concept in _concepts(charts)] + [
        record.medication_concept(entry["resource"]) for _, prefetch, _, _ in charts for value in prefetch.values()
        if isinstance(value, dict) for entry in value.get("entry") or ()
        if str(entry["resource"].get("resourceType")).startswith("Medication")]
    assert len(concepts) > 1000
    for concept in concepts:
        assert record._plain(concept) == _plain_by_loop(concept), concept


def test_a_remembered_date_is_the_date_read_afresh(monkeypatch):
    """parse_date remembers each string's date: the same answer (type, value, the text a
    partial date is quoted by) as reading it again, within its bound."""
    texts = ["2024-03-05", "2024-03-05T10:30:00Z", " 2024-03-05 ", "2024", "2024-03", "2024-02-30",
             "2024-13", "not a date", "", "20240305", "2024-03-05T25:00", "0001-01-01"]
    for text in texts * 2:
        remembered, fresh = record.parse_date(text), record._parse_date(text)
        assert (type(remembered), remembered, str(remembered)) == (type(fresh), fresh, str(fresh)), text
    assert record.parse_date(None) is None and record.parse_date(20240305) is None
    monkeypatch.setattr(record, "_DATES_LIMIT", 3)
    record._DATES.clear()
    for day in range(1, 8):
        assert record.parse_date(f"2024-01-0{day}") == dt.date(2024, 1, day)
        assert len(record._DATES) <= 3
    long = "2024-01-05" + " " * 100  # a string no FHIR date is that long: read, not kept
    assert record.parse_date(long) == dt.date(2024, 1, 5) and long not in record._DATES


def test_quantities_of_every_shape_read_as_the_plain_reader_does(monkeypatch):
    """The usual Quantity read inline (a lab's value) and a whole number on _quantity's usual
    path: the same as _any_quantity for numbers and units of every shape."""
    values = [4.1, 4, 0, -0.0, 2 ** 53, 2 ** 60, 10 ** 400, True, "4.1", None, float("nan"), float("inf")]
    units = [{"unit": "mg/dL"}, {"code": "mg/dL"}, {"unit": " mg/dL "}, {"code": 5}, {}, {"code": "", "unit": "mmol/L"}]
    for value in values:
        for unit in units:
            quantity = {"value": value, **unit}
            assert record._quantity(quantity) == record._any_quantity(quantity), quantity
    units += [{"unit": "   "}, {"code": "mmol/L", "comparator": "<"}, {"code": "mg/dL", "comparator": None},
              {"code": "mg/dL", "comparator": ""}, {"code": "mg/dL", "comparator": "ad"}]
    # calcium (units checked), eGFR (read as reported, bounds kept apart), ALP (its own range),
    # a T-score, a Z-score, FRAX, an hCG (read otherwise)
    for code in ("17861-6", "33914-3", "6768-6", "38267-1", "85394-5", "90265-0", "19080-1"):
        results = [_obs(f"c{i}", code, f"2026-01-{i % 28 + 1:02d}", valueQuantity={"value": value, **unit},
                        referenceRange=[{"high": {"value": 120.0, "unit": "U/L"}}])
                   for i, (value, unit) in enumerate((v, u) for v in values for u in units)]
        results.append(_obs("panel", code, component=[{"code": {"text": "x"}, "valueQuantity": {"value": 1.0}}],
                            valueQuantity={"value": 9.1, "unit": "mg/dL"}))
        rec = _fast_and_slow(monkeypatch, *results)
        assert rec.labs or rec.bmd or rec.frax or rec.pregnancy_tests, code


def test_ranked_labs_and_drug_events_sort_as_their_keys_say():
    """_sorted_labs by date alone when no two results share a day, and _exposures by start when
    every event has one: the orders their full keys give, ties and undated items included."""
    day = dt.date(2025, 1, 1)
    for name in ("egfr", "vitamin_d", "calcium"):
        for dates in ([day, day + dt.timedelta(1)], [day + dt.timedelta(1), day], [day, day], [None, day], [day], []):
            labs = [record.Lab(name, 40.0 + i, "u", when, f"Observation/{i}") for i, when in enumerate(dates)]
            assert record._sorted_labs(name, labs) == sorted(labs, key=record._lab_order), (name, dates)
    builder = record._Builder(TODAY, record.DEFAULT)
    starts = [day + dt.timedelta(2), None, day, day + dt.timedelta(2), None]
    builder.events = [record.MedEvent("alendronate", "bisphosphonate", "MedicationRequest", f"r/{i}", "active",
                                      start, None, day if start is None and i else None, False)
                      for i, start in enumerate(starts)]
    expected = sorted(builder.events, key=lambda e: e.start or e.dose_date or dt.date.min)
    assert builder._exposures()["alendronate"].events == tuple(expected)
    builder.events = [e for e in builder.events if e.start]
    assert builder._exposures()["alendronate"].events == tuple(sorted(builder.events, key=lambda e: e.start))
