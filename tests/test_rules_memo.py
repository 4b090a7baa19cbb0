"""Speed without a change of output: derived facts computed once per hook call
(rules.memo), the order review only for the cards that will be shown (engine,
card_policy), the sorted rule list kept (rules.base). Each test here can fail
on a wrong answer, not on time."""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect

import pytest

from cds_service import card_policy, card_render, engine
from cds_service import fixtures as fx
from cds_service.card_policy import CardPolicy
from cds_service.fhir.terminology import OSTEOPOROSIS_DRUG_CLASSES
from cds_service.record import build_record, draft_order, drafts_from_context
from cds_service.rules import base, memo
from cds_service.rules.base import Action, Finding, Suggestion, trigger_date
from cds_service.rules.facts import kidney, long_bp_course
from cds_service.rules.settings import ClinicalSettings
from cds_service.store import QuietMark

TODAY = dt.date(2026, 6, 15)
SETTINGS = ClinicalSettings()
HYPOCA = "c-safe-hypoca-alendronate-ca-8-2"  # C-TX-BP whose alendronate order C-SAFE-HYPOCA stops


def _record(name, hook="patient-view"):
    bundle = fx.load_patient(name, today=TODAY)
    prefetch = fx.prefetch_from_bundle(bundle)
    drafts = () if hook == "patient-view" else drafts_from_context({"draftOrders": fx.draft_orders_bundle(bundle)})
    return build_record(prefetch, drafts=drafts, today=TODAY, settings=SETTINGS,
                        patient_id=prefetch["patient"]["id"])


def _reference(record, policy):
    """The decision as it was made before: every chosen card through the order review,
    then the policy, then rendering (each card's cross-references worded for the cards shown)."""
    findings = engine.run_rules("patient-view", record, TODAY, SETTINGS, strict=True)
    shown, held = card_policy.apply(findings, TODAY, policy, engine._indicator)
    ids = {f.card_id for f in shown}
    cards = [card_render.render(f, patient_id=record.patient_id, today=TODAY, strict=True, shown=ids) for f in shown]
    return [c for c in cards if c is not None], held


def _policies(record):
    chosen = engine.evaluate("patient-view", record, TODAY, SETTINGS, strict=True)
    marks = [(c["source"]["topic"]["code"], c["indicator"]) for c in chosen]
    yield CardPolicy(info_budget=2, routine_budget=1)
    yield CardPolicy(info_budget=0, routine_budget=0)
    for issued in (TODAY, TODAY - dt.timedelta(days=400)):
        yield CardPolicy(quiet={cid: QuietMark(ind, issued) for cid, ind in marks}, info_budget=2, routine_budget=1)
        for cid, ind in marks:
            yield CardPolicy(quiet={cid: QuietMark(ind, issued)}, info_budget=1, routine_budget=1)


@pytest.mark.parametrize("name", [n for n in fx.patient_names() if "hypoca" in n or "pregnan" in n or "tx-" in n
                                  or "dmab" in n or "combo" in n])
def test_shown_cards_are_those_of_reviewing_every_card(name):
    record = _record(name)
    for policy in _policies(record):
        outcome = engine.decide("patient-view", record, TODAY, SETTINGS, policy=policy, strict=True)
        cards, held = _reference(record, policy)
        assert outcome.cards == cards
        assert outcome.held == held


def _old_card_rule(record, today, settings):
    # A C-TX-BP whose own facts are old: the order review adds the newer low calcium.
    return [Finding("C-TX-BP", facts=("Osteoporosis on the problem list on 2020-01-01",),
                    variables={"population": "x", "risk_text": "x", "recommendation": "x", "labs_note": "",
                               "patient_instruction": "x", "oral_bp_status": "x", "first_choice": "x",
                               "risedronate_label": "", "suggested": "x", "once": "", "order_note": "", "risk_level": "high",
                               "drug_status": "no bone drug", "treatment_status": "no osteoporosis treatment"})]


def test_a_card_quieted_as_it_is_comes_back_when_its_order_review_adds_newer_data(monkeypatch):
    record = _record(HYPOCA)
    monkeypatch.setattr(engine, "rules_for", lambda hook: [_old_card_rule] if hook == "patient-view"
                        else base.rules_for(hook))
    finding = _old_card_rule(record, TODAY, SETTINGS)[0]
    reviewed = engine.withhold_vetoed_orders([finding], record, TODAY, SETTINGS, strict=True)[0]
    newer = trigger_date(reviewed, TODAY)
    assert newer is not None and newer > trigger_date(finding, TODAY) == dt.date(2020, 1, 1)

    between = CardPolicy(quiet={"C-TX-BP": QuietMark("info", dt.date(2021, 1, 1))})
    outcome = engine.decide("patient-view", record, TODAY, SETTINGS, policy=between, strict=True)
    assert [c["source"]["topic"]["code"] for c in outcome.cards] == ["C-TX-BP"] and outcome.held == []
    assert "order offered here" in outcome.cards[0]["detail"]

    after = CardPolicy(quiet={"C-TX-BP": QuietMark("info", newer)})
    outcome = engine.decide("patient-view", record, TODAY, SETTINGS, policy=after, strict=True)
    assert outcome.cards == [] and outcome.held == [card_policy.Held("C-TX-BP", card_policy.QUIETED)]


def test_cards_held_back_are_not_reviewed(monkeypatch):
    record = _record("tx-bp-postmenopausal-osteoporosis")
    everything = engine.evaluate("patient-view", record, TODAY, SETTINGS, strict=True)
    assert len(everything) >= 2
    seen = []
    real = engine._reviewed
    monkeypatch.setattr(engine, "_reviewed", lambda f, *args: seen.append(f.card_id) or real(f, *args))
    outcome = engine.decide("patient-view", record, TODAY, SETTINGS, strict=True,
                            policy=CardPolicy(info_budget=1, routine_budget=1))
    assert outcome.held
    assert sorted(seen) == sorted(c["source"]["topic"]["code"] for c in outcome.cards)


def test_policy_asks_for_the_review_only_of_a_card_it_would_quiet():
    asked = []

    def reviewed(f):
        asked.append(f.card_id)
        return dataclasses.replace(f, facts=f.facts + ("Calcium 8.1 mg/dL on 2025-05-20",))

    findings = [Finding("C-TX-BP", facts=("T-score -2.7 on 2024-01-01",)), Finding("C-EXERCISE")]
    policy = CardPolicy(quiet={"C-TX-BP": QuietMark("info", dt.date(2025, 1, 1))}, info_budget=1)
    shown, held = card_policy.apply(findings, TODAY, policy, lambda f: "info", reviewed)
    assert asked == ["C-TX-BP"]
    assert [f.card_id for f in shown] == ["C-TX-BP"]  # the review's newer date wakes it
    assert [(h.card_id, h.reason) for h in held] == [("C-EXERCISE", card_policy.OVER_BUDGET)]
    shown, held = card_policy.apply(findings, TODAY, policy, lambda f: "info", lambda f: f)
    assert [f.card_id for f in shown] == ["C-EXERCISE"]


def _order_fixtures():
    for name in fx.patient_names():
        if fx.drafts_from_bundle(fx.load_patient(name, today=TODAY)):
            yield name


@pytest.mark.parametrize("name", list(_order_fixtures()))
def test_no_fact_computed_once_per_call_reads_the_drafts(name):
    """The order review's trial records (the chart with one draft) share the chart's
    answers: a marked function must answer the same whatever the drafts."""
    record = _record(name, "order-sign")
    assert record.drafts
    bare = dataclasses.replace(record, drafts=())
    for fn in memo.MARKED:
        params = inspect.signature(fn).parameters
        args = (SETTINGS,) if "settings" in params else ()
        assert fn(record, *args) == fn(bare, *args), f"{fn.__module__}.{fn.__name__} depends on the drafts"


def test_answers_are_kept_within_a_call_only():
    record = _record("tx-bp-postmenopausal-osteoporosis")
    assert kidney(record, SETTINGS) is not kidney(record, SETTINGS)  # no scope: computed each time
    with memo.scope():
        first = kidney(record, SETTINGS)
        assert kidney(record, SETTINGS) is first
        with memo.scope():  # nested: the same call
            assert kidney(record, SETTINGS) is first
        other = dataclasses.replace(record, labs={})  # another record: its own answer
        assert kidney(other, SETTINGS) != first and kidney(other, SETTINGS).band == "unknown"
        assert kidney(record, dataclasses.replace(SETTINGS, kidney_lab_max_age_months=1)) is not first
    with memo.scope():
        assert kidney(record, SETTINGS) is not first  # a new call computes anew


def test_a_list_answer_cannot_be_changed_by_its_caller():
    record = _record("c-holiday-alendronate-5-years")
    with memo.scope():
        answer = long_bp_course(record, SETTINGS)
        assert answer
        answer.append("changed")
        assert "changed" not in long_bp_course(record, SETTINGS)


def test_a_trial_record_shares_the_charts_answers_within_a_call():
    record = _record("tx-bp-postmenopausal-osteoporosis")
    with memo.scope():
        first = kidney(record, SETTINGS)
        trial = dataclasses.replace(record, drafts=())
        memo.same_chart(trial, record)
        assert kidney(trial, SETTINGS) is first
    trial = dataclasses.replace(record, drafts=())
    memo.same_chart(trial, record)  # outside a scope: nothing shared, nothing kept
    assert kidney(trial, SETTINGS) is not kidney(record, SETTINGS)


def test_a_rule_registered_later_is_run(monkeypatch):
    before = base.rules_for("order-sign")
    monkeypatch.setitem(base._REGISTRY, "order-sign", list(base._REGISTRY["order-sign"]))

    def late_rule(record, today, settings):
        return []

    base.rule("order-sign")(late_rule)
    assert base.rules_for("order-sign") == before + [late_rule]
    assert late_rule not in base.rules_for("order-select")


def test_each_app_judges_with_its_own_clinical_settings(make_app):
    """The clinical settings are built once per service Settings object, not once per
    process: two apps with different limits answer differently, call after call."""
    bundle = fx.load_patient(HYPOCA, today=dt.date.today())
    prefetch = fx.prefetch_from_bundle(bundle)
    body = {"hookInstance": "d3b0a4a4-0000-4000-8000-000000000001", "hook": "patient-view",
            "context": {"patientId": prefetch["patient"]["id"], "userId": "Practitioner/example"},
            "prefetch": prefetch}
    budget = {"CDS_INFO_CARD_BUDGET": "100", "CDS_ROUTINE_CARD_BUDGET": "100"}
    usual = make_app(**budget).test_client()
    lenient = make_app(CDS_CALCIUM_LOWER_MG_DL="7.5", **budget).test_client()

    def details():
        resp = (usual if client == "usual" else lenient).post("/cds-services/osteoporosis-patient-view", json=body)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        return " ".join(c["detail"] for c in resp.get_json()["cards"])

    answers = {}
    for client in ("usual", "lenient", "usual", "lenient"):
        answers.setdefault(client, set()).add("below 8.5 mg/dL" in details())
    assert answers == {"usual": {True}, "lenient": {False}}


def test_only_a_medication_request_can_be_an_osteoporosis_drug_order():
    """The order review fills only MedicationRequests (engine.DRUG_ORDER_TYPES): any other
    order naming an osteoporosis drug is still no drug order to the review."""
    alendronate = {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "904431"}],
                   "text": "alendronate 70 mg oral tablet"}
    types = {r.get("resourceType") for card_id in card_render.card_ids()
             for r in (card_render.load_card(card_id).get("resources") or {}).values()}
    assert engine.DRUG_ORDER_TYPES < types
    for rtype in sorted(types | {"MedicationStatement", "DeviceRequest", "NutritionOrder"}):
        resource = {"resourceType": rtype, "id": "x", "status": "draft", "intent": "order",
                    "medicationCodeableConcept": alendronate, "code": alendronate}
        draft = draft_order(resource)
        named = bool(draft and draft.drug_classes & OSTEOPOROSIS_DRUG_CLASSES)
        assert named == (rtype in engine.DRUG_ORDER_TYPES), rtype


def test_a_suggestions_other_orders_are_filled_only_when_asked(monkeypatch):
    card = {"id": "C-TX-BP", "indicator": "info", "summary": "s", "resources": {
        "drug": {"resourceType": "MedicationRequest", "medicationCodeableConcept": {"text": "{{drug}}"}},
        "lab": {"resourceType": "ServiceRequest", "code": {"text": "{{lab}}"}}},
        "suggestions": [{"key": "both", "actions": [
            {"type": "create", "description": "d", "resource": "lab"},
            {"type": "create", "description": "d", "resource": "drug"}]}]}
    monkeypatch.setattr(card_render, "load_card", lambda card_id: card)
    finding = Finding("C-TX-BP", variables={"drug": "alendronate 70 mg oral tablet"})  # no {{lab}}: cannot render
    assert card_render.suggestion_orders(finding, patient_id="p", today=TODAY) == []
    [(ident, resources, renders)] = card_render.suggestion_orders(finding, patient_id="p", today=TODAY,
                                                                  resource_types=engine.DRUG_ORDER_TYPES)
    assert ident == ("key", "both") and [r["resourceType"] for r in resources] == ["MedicationRequest"]
    assert renders() is False
    finding = dataclasses.replace(finding, variables={**finding.variables, "lab": "calcium"})
    [(_, resources, renders)] = card_render.suggestion_orders(finding, patient_id="p", today=TODAY,
                                                              resource_types=engine.DRUG_ORDER_TYPES)
    assert len(resources) == 1 and renders() is True
    [(_, resources, renders)] = card_render.suggestion_orders(finding, patient_id="p", today=TODAY)
    assert [r["resourceType"] for r in resources] == ["ServiceRequest", "MedicationRequest"] and renders()


def test_a_suggestion_built_in_code_lists_only_the_asked_types(monkeypatch):
    card = {"id": "C-TX-BP", "indicator": "info", "summary": "s", "resources": {}, "suggestions": []}
    monkeypatch.setattr(card_render, "load_card", lambda card_id: card)
    lab = {"resourceType": "ServiceRequest", "code": {"text": "calcium"}}
    drug = {"resourceType": "MedicationRequest", "medicationCodeableConcept": {"text": "alendronate"}}
    finding = Finding("C-TX-BP", extra_suggestions=(
        Suggestion("both", (Action("create", "d", lab), Action("create", "d", drug))),))
    [(ident, resources, renders)] = card_render.suggestion_orders(finding, patient_id="p", today=TODAY,
                                                                  resource_types=engine.DRUG_ORDER_TYPES)
    assert ident == ("extra", 0) and resources == [drug] and renders() is True
    [(_, resources, _)] = card_render.suggestion_orders(finding, patient_id="p", today=TODAY)
    assert resources == [lab, drug]


def test_a_vetoed_order_in_a_suggestion_that_cannot_render_is_not_withheld(monkeypatch):
    """render() drops such a suggestion anyway: the review adds no note about it, as when
    it filled every order of the suggestion first."""
    record = _record(HYPOCA)
    finding = _old_card_rule(record, TODAY, SETTINGS)[0]
    card = card_render.load_card("C-TX-BP")
    broken = {**card, "resources": {**card["resources"], "lab": {"resourceType": "ServiceRequest",
                                                                  "code": {"text": "{{no_such_value}}"}}},
              "suggestions": [{**s, "actions": [{"type": "create", "description": "x", "resource": "lab"},
                                                *s["actions"]]} for s in card["suggestions"]]}
    reviewed = engine.withhold_vetoed_orders([finding], record, TODAY, SETTINGS, strict=True)[0]
    assert reviewed != finding  # the usual card: its alendronate order is withheld
    real = card_render.load_card
    monkeypatch.setattr(card_render, "load_card", lambda card_id: broken if card_id == "C-TX-BP" else real(card_id))
    assert engine.withhold_vetoed_orders([finding], record, TODAY, SETTINGS, strict=True)[0] == finding
