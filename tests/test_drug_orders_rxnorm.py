"""Every drug order the service offers carries an RxNorm coding (review 21): a
MedicationRequest a card suggests creating is signed as the EHR receives it, and an
order known only by its text cannot be checked by the EHR's own drug screening.

Every fixture patient on every hook, every card the rules choose (no quieting, no
budget). The one exception: romosozumab, for which the value sets hold no verified
RxNorm code (terminology_data/README: not found in any public source searched, so
matched by name); the test checks that this is still so, so the exception lapses
when a verified code is added.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from cds_service import fixtures as fx
from cds_service.card_policy import CardPolicy
from cds_service.config import load_settings
from cds_service.fhir import terminology as t
from cds_service.rules.base import HOOKS
from cds_service.services import HookCall
from cds_service.services.clinical import evaluate
from tests.test_fixture_scenarios import hook_body

TODAY = dt.date.today()
# Agents whose value set holds no RxNorm code: their orders are written by name.
NO_VERIFIED_RXNORM = {"romosozumab"}


def _offered_orders(cards: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(card id, MedicationRequest) for every order a suggestion creates (an update
    returns the EHR's own order, as the EHR coded it)."""
    for card in cards:
        for suggestion in card.get("suggestions", ()):
            for action in suggestion["actions"]:
                resource = action.get("resource") or {}
                if action["type"] == "create" and resource.get("resourceType") == "MedicationRequest":
                    yield card["source"]["topic"]["code"], resource


def _problem(order: dict[str, Any]) -> str | None:
    concept = order.get("medicationCodeableConcept") or {}
    if any(c.get("system") == t.RXNORM and c.get("code") for c in concept.get("coding", ())):
        return None
    agents = set(t.classify_medication(concept).agents)
    if agents and agents <= NO_VERIFIED_RXNORM:
        return None
    return f"no RxNorm coding: {concept.get('text') or concept}"


def test_the_romosozumab_exception_still_holds():
    for agent in NO_VERIFIED_RXNORM:
        assert t.AGENTS[agent].rxnorm == frozenset(), f"{agent} has an RxNorm code now: code its orders"
    # The check itself: an order by name only fails it, an RxNorm-coded one passes.
    named = {"resourceType": "MedicationRequest", "medicationCodeableConcept": {"text": "alendronate 70 mg"}}
    assert _problem(named)
    coded = {"medicationCodeableConcept": {"coding": [{"system": t.RXNORM, "code": "904431"}]}}
    assert _problem(coded) is None


def test_every_offered_drug_order_carries_an_rxnorm_coding():
    settings = load_settings({}, environ={})
    seen, problems = set(), []
    for name in fx.patient_names():
        bundle = fx.load_patient(name, today=TODAY)
        for hook in HOOKS:
            body = hook_body(bundle, hook)
            call = HookCall(service_id=hook, hook=hook, hook_instance="rxnorm", context=body["context"],
                            prefetch=body["prefetch"], today=TODAY, settings=settings, policy=CardPolicy())
            for card_id, order in _offered_orders(evaluate(call).cards):
                seen.update(t.classify_medication(order.get("medicationCodeableConcept")).agents)
                problem = _problem(order)
                if problem:
                    problems.append(f"{name} {hook} {card_id}: {problem}")
    assert not problems, "\n".join(sorted(set(problems)))
    # The fixtures do offer orders of every kind the cards write, romosozumab included.
    assert {"alendronate", "zoledronic_acid", "denosumab", "teriparatide", "romosozumab"} <= seen
