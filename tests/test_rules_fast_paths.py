"""The rules' shortcuts change no answer and no card.

PatientRecord's query methods skip the copy of an absent condition group and of a
frozenset of drug classes, and the order review builds its trial record (the chart
with one suggested draft) without dataclasses.replace. Over every fixture chart
(and its drafts) each answer equals the one written the plain way, and every hook's
cards are the same with dataclasses.replace in the review."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from cds_service import engine
from cds_service import fixtures as fx
from cds_service import record
from cds_service.fhir import terminology as t

TODAY = dt.date(2026, 11, 30)
CLASS_SETS = (t.OSTEOPOROSIS_DRUG_CLASSES, t.BISPHOSPHONATE_CLASSES, t.ANTIRESORPTIVE_CLASSES,
              t.ANABOLIC_CLASSES, t.SUPPLEMENT_CLASSES, frozenset())


@pytest.fixture(scope="module")
def records():
    out = []
    for name in fx.patient_names():
        bundle = fx.load_patient(name, today=TODAY)
        prefetch = fx.prefetch_from_bundle(bundle)
        pid = (prefetch.get("patient") or {}).get("id") or "none"
        out.append(record.build_record(prefetch, drafts=fx.drafts_from_bundle(bundle), today=TODAY,
                                       patient_id=pid))
    return out


def _condition_hits_plain(rec, group, active_only=True, within_months_=None):
    hits = list(rec.conditions.get(group, ()))
    if active_only:
        hits = [h for h in hits if h.active]
    if within_months_ is not None:
        hits = [h for h in hits if record.within_months(h.date, rec.today, within_months_)]
    return hits


def test_condition_hits_are_the_plain_filter(records):
    groups = {g for rec in records for g in rec.conditions} | {"no_such_group"}
    for rec in records:
        for group in groups:
            for active_only in (True, False):
                for months in (None, 12, 120):
                    got = rec.condition_hits(group, active_only=active_only, within_months_=months)
                    assert got == _condition_hits_plain(rec, group, active_only, months)
                    assert type(got) is list


def test_exposures_and_active_agents_are_the_plain_filter(records):
    for rec in records:
        for classes in CLASS_SETS:
            for given in (classes, set(classes), sorted(classes), tuple(classes)):
                plain = [e for e in rec.medications.values() if e.drug_class in set(given)]
                assert rec.exposures(given) == plain
                assert rec.active_agents(given) == [e for e in plain if e.active]


def test_the_review_trial_record_is_the_replaced_record(records):
    seen = 0
    for rec in records:
        for draft in rec.drafts:
            trial = engine.record_replace(rec, drafts=(draft,))
            plain = dataclasses.replace(rec, drafts=(draft,))
            assert type(trial) is type(plain) and trial == plain and trial.__dict__ == plain.__dict__
            seen += 1
    assert seen  # some fixture has drafts


def test_cards_are_the_same_with_dataclasses_replace_in_the_review(records, monkeypatch):
    hooks = ("patient-view", "order-select", "order-sign")
    fast = [engine.evaluate(h, rec, TODAY, strict=True) for rec in records for h in hooks]
    monkeypatch.setattr(engine, "record_replace", dataclasses.replace)
    assert fast == [engine.evaluate(h, rec, TODAY, strict=True) for rec in records for h in hooks]


def _suggested_and_drafted(records):
    """Every fixture draft and every resource a card of any hook suggests, fixture by fixture."""
    from cds_service import card_render

    for rec in records:
        resources = [d.resource for d in rec.drafts]
        for hook in ("patient-view", "order-select", "order-sign"):
            for finding in engine.run_rules(hook, rec, TODAY, strict=True):
                for _, found, _ in card_render.suggestion_orders(finding, patient_id=rec.patient_id, today=TODAY):
                    resources += found
        yield resources


def test_the_review_draft_is_draft_order(records, monkeypatch):
    """The review's draft of a suggested order, remembered across calls by its content
    without the subject, equals draft_order's, for a first read and a remembered one, for
    another patient's copy, and for data that is not plain JSON (read as it is)."""
    import uuid

    monkeypatch.setattr(engine, "_DRAFTS", {})
    seen = 0
    for resources in _suggested_and_drafted(records):
        for res in resources:
            for _ in range(2):  # read, then remembered
                got = engine._draft_of(res)
                assert got == record.draft_order(res)
                assert got is None or got.resource is res
            other = {**res, "subject": {"reference": "Patient/someone-else"}}
            assert engine._draft_of(other) == record.draft_order(other)
            seen += 1
    assert seen > 50 and engine._DRAFTS

    class Text(str):
        pass

    base = {"resourceType": "MedicationRequest", "id": "a", "subject": {"reference": "Patient/p"},
            "medicationCodeableConcept": {"coding": [{"system": t.RXNORM, "code": "993452"}], "text": "denosumab"},
            "dosageInstruction": [{"timing": {"event": ["2027-01-02"]}}]}
    odd = [
        {**base, "id": uuid.UUID(int=1)},                      # written as its string by orjson
        {**base, "id": Text("a")},                             # a str subclass
        {**base, "dosageInstruction": ({"timing": {"event": ("2027-01-02",)}},)},  # tuples, written as lists
        {**base, "dosageInstruction": [{"timing": {"event": [dt.date(2027, 1, 2)]}}]},  # a date
        {**base, "medicationCodeableConcept": None}, [base], "text", {"id": "no type"},
    ]
    # Each odd one after the plain one its content is the same as (a remembered draft).
    for res in (base, {**base, "id": str(uuid.UUID(int=1))}, *odd, base):
        assert engine._draft_of(res) == record.draft_order(res)


def test_with_facts_is_dataclasses_replace(records):
    from cds_service.rules import base

    seen = 0
    for rec in records:
        for hook in ("patient-view", "order-select", "order-sign"):
            for finding in engine.run_rules(hook, rec, TODAY, strict=True):
                facts = ("new fact", *finding.facts)
                got = base.with_facts(finding, facts)
                plain = dataclasses.replace(finding, facts=facts)
                assert type(got) is type(plain) and got == plain and got.__dict__ == plain.__dict__
                seen += 1
    assert seen


def _dataclass_init(cls):
    """The __init__ dataclasses itself writes for cls's fields (and its __post_init__)."""
    post = {"__post_init__": cls.__post_init__} if hasattr(cls, "__post_init__") else {}
    plain = type(cls.__name__, (), {
        "__annotations__": cls.__annotations__, **post,
        **{f.name: (f.default if f.default_factory is dataclasses.MISSING else dataclasses.field(
            default_factory=f.default_factory)) for f in dataclasses.fields(cls)
           if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}})
    return dataclasses.dataclass(frozen=True)(plain).__init__


def test_findings_are_the_same_with_the_dataclass_init(records, monkeypatch):
    """Finding, Suggestion and Action fill their __dict__ directly (record._quick_init):
    every hook's findings and cards over the fixtures are the same with dataclasses' own
    __init__, a default `variables` is a new dict each time, and a bad indicator still raises."""
    from cds_service.rules import base

    hooks = ("patient-view", "order-select", "order-sign")
    fast = [(engine.run_rules(h, rec, TODAY, strict=True), engine.evaluate(h, rec, TODAY, strict=True))
            for rec in records for h in hooks]
    first, second = base.Finding("C-X"), base.Finding("C-X")
    assert first.variables == {} and first.variables is not second.variables
    with pytest.raises(ValueError):
        base.Finding("C-X", indicator="urgent")
    for cls in (base.Finding, base.Suggestion, base.Action):
        monkeypatch.setattr(cls, "__init__", _dataclass_init(cls))
    slow = [(engine.run_rules(h, rec, TODAY, strict=True), engine.evaluate(h, rec, TODAY, strict=True))
            for rec in records for h in hooks]
    assert fast == slow
    assert repr(fast) == repr(slow)
    assert sum(len(findings) for findings, _ in fast) > 100
