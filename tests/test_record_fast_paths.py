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


def _without_shortcuts(monkeypatch):
    """Every remembered answer computed afresh, and the dataclasses' own __init__."""
    monkeypatch.setattr(record._CodeMemo, "reading", lambda self, read, concept: read(concept))
    monkeypatch.setattr(record._CodeMemo, "names_in", lambda self, rtype, test, text: test(text))
    monkeypatch.setattr(record, "_plain_key", lambda rtype, concepts: None)
    monkeypatch.setattr(record._Builder, "_lab_value",
                        lambda self, value_set, value, unit, concept: record.lab_value(value_set, value, unit, concept))
    monkeypatch.setattr(record._Builder, "_sets_of",
                        lambda self, concept: self.codes.sets_of("Observation", concept))
    monkeypatch.setattr(record, "_value_sets_in_order",
                        lambda found: tuple(sorted(v for v in found if not v.startswith(record.FRACTURE_SETS))))
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
