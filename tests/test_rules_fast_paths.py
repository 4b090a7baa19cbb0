"""The rules' shortcuts change no answer and no card.

PatientRecord's query methods skip the copy of an absent condition group and of a
frozenset of drug classes, and the order review builds its trial record (the chart
with one suggested draft) without dataclasses.replace. Over every fixture chart
(and its drafts) each answer equals the one written the plain way, and every hook's
cards are the same with dataclasses.replace in the review. as_written formats most values
without decimal arithmetic, the memo hands out its copies by a copier chosen once, the
drug-start cards' facts are deduplicated without joining them anew for each, and
C-SUPP-CAVD is built with its trigger: each equals the plain computation."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import decimal
import inspect
import random

import pytest

from cds_service import engine
from cds_service import fixtures as fx
from cds_service import record
from cds_service.fhir import terminology as t
from cds_service.rules import load_all, memo, supplementation, treatment
from cds_service.rules.diagnosis import assess
from cds_service.rules.settings import DEFAULT

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


def _as_written_plain(value, decimals):
    text = f"{decimal.Decimal(repr(value)).quantize(decimal.Decimal(1).scaleb(-decimals), decimal.ROUND_HALF_UP)}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def test_as_written_is_the_decimal_rounding(records):
    values = [lab.value for rec in records for labs in rec.labs.values() for lab in labs]
    values += [b.value for rec in records for b in rec.bmd] + [f.percent for rec in records for f in rec.frax]
    assert values
    # Ties of the written decimal (binary 2.55 is 2.5499...), zeros and signs, ints, sizes.
    values += [2.55, -2.55, 2.45, 0.05, -0.05, -0.04, 0.5, -0.5, 1.5, 2.5, 61.5, 999.995, 0.0, -0.0, 0, -2, 62,
               1e9, -1e9, 1e15, 5e-7, -5e-7, 1.25, 0.125, float("inf"), True]
    rng = random.Random(7)
    values += [rng.uniform(-300, 300) for _ in range(3000)]
    values += [rng.randint(-3000, 3000) / 10 ** rng.randint(0, 4) + rng.choice((0, 0.05, -0.005))
               for _ in range(3000)]
    for value in values:
        for decimals in range(4):
            try:
                plain = _as_written_plain(value, decimals)
            except decimal.InvalidOperation:
                with pytest.raises(decimal.InvalidOperation):
                    record.as_written(value, decimals)
                continue
            assert record.as_written(value, decimals) == plain, (value, decimals)


def _fact_calls(rec):
    for fn in memo.MARKED:
        params = inspect.signature(fn).parameters
        yield fn, ((DEFAULT,) if "settings" in params else ())


def test_memo_hits_hand_out_fresh_copies_of_the_answer(records):
    """Within a call every hit equals the plain answer; a list, dict or set (also one in a
    tuple) is a new one each time, anything else the same object."""
    containers = (list, dict, set)
    copied = 0
    for rec in records:
        for fn, args in _fact_calls(rec):
            plain = fn(rec, *args)
            with memo.scope():
                first, second = fn(rec, *args), fn(rec, *args)
            assert first == second == plain, fn.__name__
            if type(first) in containers:
                assert first is not second, fn.__name__
                copied += 1
            elif type(first) is tuple and any(type(v) in containers for v in first):
                for a, b in zip(first, second, strict=True):
                    assert (a is not b) if type(a) in containers else (a is b), fn.__name__
                copied += 1
            else:
                assert first is second, fn.__name__
    assert copied


def _facts_plain(rec, settings, first):
    facts = []
    for fact in list(first) + [b.fact() for b in rec.latest_t_scores().values()] + treatment.lab_facts(rec, settings):
        if fact.lower() not in " | ".join(facts).lower():
            facts.append(fact)
    return tuple(facts)


def test_drug_start_facts_are_the_plain_deduplication(records):
    for rec in records:
        a = assess(rec, DEFAULT)
        for first in ([], list(a.reasons), list(a.vhr_reasons) + list(a.reasons),
                      list(a.reasons) + [f"Recent {r.lower()}" for r in a.reasons]):
            assert treatment._facts(rec, DEFAULT, first) == _facts_plain(rec, DEFAULT, first)


def test_supplement_card_carries_its_trigger_as_replace_gave_it(records):
    fired = 0
    for rec in records:
        for finding in supplementation.calcium_vitamin_d(rec, TODAY, DEFAULT):
            assert finding.trigger == supplementation._supplement_trigger(rec)
            fired += 1
    assert fired


def test_the_usual_facts_have_the_short_wrappers_and_answer_as_the_general_one(records):
    """fn(record, settings) and fn(record) get wrappers without *args/**kwargs; within a
    call, and for a trial record that shares the chart's answers, each answers as the
    general wrapper does, once per chart and settings (by identity, or by value for a
    plain value)."""
    load_all()
    general_code = memo._per_call_any(len).__code__
    short = [fn for fn in memo.MARKED if fn.__code__ is not general_code]
    assert len(short) > 20
    for fn in memo.MARKED:
        params = inspect.signature(fn.__wrapped__).parameters.values()
        usual = (tuple(p.name for p in params) in (("record", "settings"), ("record",))
                 and all(p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD for p in params))
        assert (fn in short) == usual, fn.__name__
    other_settings = dataclasses.replace(DEFAULT, lab_max_age_months=1)
    for rec in records:
        trial = engine.record_replace(rec, drafts=())
        for fn in short:
            general = memo._per_call_any(fn.__wrapped__)
            args_list = [(DEFAULT,), (other_settings,)] if fn.__code__.co_argcount == 2 else [()]
            with memo.scope():
                memo.same_chart(trial, rec)
                got = [(fn(rec, *args), fn(trial, *args)) for args in args_list]
                answers = len(memo._CURRENT.get().answers)
            with memo.scope():
                memo.same_chart(trial, rec)
                assert got == [(general(rec, *args), general(trial, *args)) for args in args_list], fn.__name__
                assert len(memo._CURRENT.get().answers) == answers, fn.__name__


def test_a_plain_settings_value_is_keyed_by_value():
    computed = []

    @memo.per_call
    def fact(record, settings):
        computed.append(settings)
        return [settings]

    rec = object()
    with memo.scope():
        assert fact(rec, 3) == fact(rec, 3) == [3]
        assert fact(rec, 4) == [4]
        assert fact(rec, "4") == ["4"]
    assert computed == [3, 4, "4"]
    memo.MARKED.remove(fact)  # not a fact of the rules (test_rules_memo checks them all)


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


def _review_trials(records):
    """(chart, trial record) for every fixture chart and every drug order a card of any
    hook suggests or the fixture drafts, as the order review builds its trial."""
    for rec, resources in zip(records, _suggested_and_drafted(records), strict=True):
        for res in resources:
            draft = record.draft_order(res)
            if draft is not None:
                yield rec, engine.record_replace(rec, drafts=(draft,)), res


def test_order_rules_return_only_the_cards_they_declare(records):
    """The review leaves out order-sign rules whose declared cards cannot be critical
    (engine._review_rules): each rule returns only the cards it declares, at an indicator
    the catalogue allows, on every fixture chart with its drafts and on every review trial."""
    from cds_service import card_render
    from cds_service.rules.base import rules_for
    from cds_service.rules.catalogue import CATALOGUE

    declared = [r for r in rules_for("order-sign") + rules_for("order-select") if getattr(r, "cards", None)]
    assert len(declared) >= len(rules_for("order-sign"))  # every order-sign rule declares its cards
    charts = [*records, *(trial for _, trial, _ in _review_trials(records))]
    seen = 0
    for rec in charts:
        for rule in declared:
            for finding in rule(rec, TODAY, DEFAULT):
                assert finding.card_id in rule.cards, (rule.__name__, finding.card_id)
                indicator = finding.indicator or card_render.load_card(finding.card_id)["indicator"]
                assert indicator in CATALOGUE[finding.card_id][1], (rule.__name__, indicator)
                seen += 1
    assert seen > 20


def test_the_review_judges_as_with_every_order_sign_rule(records, monkeypatch):
    """Leaving out the rules that cannot veto changes no verdict: _judged over every suggested
    or drafted order of every fixture, and every hook's cards, are the same with all
    order-sign rules run."""
    from cds_service.rules.base import rules_for

    kept = engine._review_rules()
    assert 0 < len(kept) < len(rules_for("order-sign"))
    hooks = ("patient-view", "order-select", "order-sign")

    def verdicts():
        out = []
        for rec, _, res in _review_trials(records):
            with memo.scope():
                draft, found = engine._judged(res, rec, TODAY, DEFAULT, True)
            out.append((draft, found))
        return out

    fast = verdicts(), [engine.evaluate(h, rec, TODAY, strict=True) for rec in records for h in hooks]
    assert any(found for _, found in fast[0])  # some suggested order is vetoed
    monkeypatch.setattr(engine, "_review_rules", lambda: rules_for("order-sign"))
    assert fast == (verdicts(), [engine.evaluate(h, rec, TODAY, strict=True) for rec in records for h in hooks])


def test_a_rule_without_declared_cards_or_with_a_critical_card_is_reviewed():
    assert engine._may_veto(None)
    assert engine._may_veto(("C-SAFE-HYPOCA",)) and engine._may_veto(("C-SUPP-CAVD", "C-SAFE-RENAL"))
    assert engine._may_veto(("C-NOT-IN-THE-CATALOGUE",))
    assert not engine._may_veto(("C-SUPP-CAVD",)) and not engine._may_veto(("C-SAFE-DMAB-CKD",))


def test_the_first_chart_and_settings_are_kept_by_the_wrapper_alone_and_answer_once_each():
    """The scope's first chart and settings object have their answers kept by the wrapper alone
    (memo.of_chart, memo.of_chart_settings): whichever record and settings come first (a trial
    record of the chart, a plain settings value, the chart on its own), every wrapper kind
    computes once per chart and settings and answers what the fact answers outside a scope."""
    computed = []

    @memo.per_call
    def with_settings(record, settings):
        computed.append(("s", record, settings))
        return [record.name, settings]

    @memo.per_call
    def of_record(record):
        computed.append(("r", record))
        return {"record": record.name}

    @memo.per_call
    def general(record, settings=None):
        computed.append(("g", record, settings))
        return (record.name, [settings])

    class Chart:
        def __init__(self, name):
            self.name = name  # the trial, the chart with a draft, answers as the chart

    chart, other, trial = Chart("chart"), Chart("other"), Chart("chart")
    one, two = dataclasses.replace(DEFAULT), dataclasses.replace(DEFAULT, lab_max_age_months=1)
    calls = [(with_settings, (one,)), (with_settings, (two,)), (with_settings, (3,)), (of_record, ()),
             (general, ()), (general, (one,)), (general, (two,)), (general, (3,))]
    for first in [(trial, 3), (trial, one), (chart, two), (other, one), (chart, None)]:
        for order in (calls, calls[::-1]):
            computed.clear()
            with memo.scope():
                memo.same_chart(trial, chart)
                record, settings = first
                (with_settings(record, settings) if settings is not None else of_record(record))
                answers = [(fn, rec, args, fn(rec, *args)) for _ in range(2) for rec in (chart, trial, other)
                           for fn, args in order]
            keys = {(kind, id(rec) if rec is not trial else id(chart), *map(id, more)) for kind, rec, *more in computed}
            assert len(keys) == len(computed) == 16  # each chart (the trial's is the chart) and settings once
            for fn, rec, args, got in answers:
                assert got == fn.__wrapped__(rec, *args)
    for fn in (with_settings, of_record, general):
        memo.MARKED.remove(fn)


def test_the_per_call_t_scores_are_the_records(records):
    """diagnosis.latest_t_scores and lowest_t (once per call) answer as the record's own
    latest_t_scores() and lowest_t, in a scope and out of one; t_scores and z_scores by the
    default sites as by the same sites given."""
    from cds_service.rules import diagnosis

    for rec in records:
        for scoped in (False, True):
            with memo.scope() if scoped else contextlib.nullcontext():
                for _ in range(2):
                    assert diagnosis.latest_t_scores(rec) == rec.latest_t_scores()
                    assert diagnosis.lowest_t(rec) is rec.lowest_t or diagnosis.lowest_t(rec) == rec.lowest_t
        assert rec.t_scores() == rec.t_scores(list(record.DIAGNOSTIC_SITES))
        assert rec.z_scores() == rec.z_scores(list(record.DIAGNOSTIC_SITES))
