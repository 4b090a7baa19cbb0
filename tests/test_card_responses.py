"""Whatever a service produces, the response that leaves is conformant CDS Hooks 2.0."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from cds_service.protocol.responses import finish_cards, new_uuid, prune_empty
from cds_service.engine import Outcome
from cds_service.protocol.runtime import runtime
from requests_for_tests import hook_request

VALID_MR = {
    "resourceType": "MedicationRequest", "status": "draft", "intent": "order",
    "medicationCodeableConcept": {"text": "alendronate 70 mg"}, "subject": {"reference": "Patient/pat-1"},
}


def card(code="C-X", indicator="info", **extra):
    c = {"summary": f"Card {code}", "indicator": indicator,
         "source": {"label": "Brief", "topic": {"system": "https://example.org/rules", "code": code}}}
    c.update(extra)
    return c


def with_cards(app, cards):
    rt = runtime(app)
    service = rt.services["osteoporosis-patient-view"]
    rt.services["osteoporosis-patient-view"] = dataclasses.replace(service, evaluate=lambda call: Outcome(cards))


def test_uuids_sorting_and_selection_behavior(app):
    with_cards(app, [
        card("C-A", "info"),
        card("C-B", "critical", suggestions=[{"label": "Order", "actions": [
            {"type": "create", "description": "Order it", "resource": VALID_MR}]}]),
        card("C-C", "warning"),
    ])
    cards = app.test_client().post("/cds-services/osteoporosis-patient-view", json=hook_request()).get_json()["cards"]
    assert [c["indicator"] for c in cards] == ["critical", "warning", "info"]
    for c in cards:
        uuid.UUID(c["uuid"])
    suggestion = cards[0]["suggestions"][0]
    uuid.UUID(suggestion["uuid"])
    assert cards[0]["selectionBehavior"] in ("any", "at-most-one")


def test_invalid_suggested_resource_is_never_sent(app, caplog):
    bad = {k: v for k, v in VALID_MR.items() if k != "subject"}  # subject is required in R4
    with_cards(app, [card("C-BAD", suggestions=[
        {"label": "Broken", "actions": [{"type": "create", "description": "x", "resource": bad}]},
        {"label": "Fine", "actions": [{"type": "create", "description": "y", "resource": VALID_MR}]},
    ])])
    cards = app.test_client().post("/cds-services/osteoporosis-patient-view", json=hook_request()).get_json()["cards"]
    assert [s["label"] for s in cards[0]["suggestions"]] == ["Fine"]
    assert "suggestion dropped" in caplog.text


def test_empty_values_are_removed_and_summary_kept_short():
    out = finish_cards([card("C-E", detail="", links=[], summary="x" * 300,
                             overrideReasons=[{"code": "declined", "system": "s", "display": "Patient declined"}],
                             suggestions=[{"label": "L", "isRecommended": None, "actions": [
                                 {"type": "delete", "description": "Remove draft", "resourceId": "MedicationRequest/1"}
                             ]}])])
    c = out[0]
    assert "detail" not in c and "links" not in c
    assert len(c["summary"]) < 140
    assert "isRecommended" not in c["suggestions"][0]


def test_card_without_required_fields_is_dropped():
    assert finish_cards([{"summary": "no indicator", "source": {"label": "x"}}]) == []
    assert finish_cards([{"indicator": "info", "source": {"label": "x"}}]) == []
    assert finish_cards([card(indicator="urgent")]) == []


@pytest.mark.parametrize("value,expected", [
    ({"a": None, "b": "", "c": [], "d": {}, "e": 0, "f": False}, {"e": 0, "f": False}),
    ({"a": [{"b": None}], "c": {"d": {"e": ""}}}, {}),
    ([1, None, "", [2, []]], [1, [2]]),
])
def test_prune_empty(value, expected):
    assert prune_empty(value) == expected


def _containers(value):
    """The dicts and lists prune_empty walks (a tuple, like any other value, is kept as it is)."""
    if isinstance(value, (dict, list)):
        yield value
        for item in value.values() if isinstance(value, dict) else value:
            yield from _containers(item)


@pytest.mark.parametrize("value", [
    {"summary": 'a text ending in a quote"', "n": 0, "ok": False, "x": 1.5, "actions": [{"resource": {"a": [1, 2]}}]},
    {"codes": ("a", "b"), "nested": {"tuple": (1, {"k": "v"})}},  # tuples stay tuples
    [{"a": "\u00e9"}, [1, [2]]],
])
def test_prune_empty_of_a_tree_with_nothing_empty_is_an_equal_new_tree(value):
    pruned = prune_empty(value)
    assert pruned == value
    assert repr(pruned) == repr(value)  # the same types all through (a tuple stays a tuple)
    assert not {id(c) for c in _containers(pruned)} & {id(c) for c in _containers(value)}  # new dicts and lists


def test_nothing_empty_is_added_after_pruning():
    out = finish_cards([card("C-E", overrideReasons=[{"system": "s"}, {"code": "declined", "system": "s"}],
                             suggestions=[{"label": "No actions", "actions": []},
                                          {"label": "Only empties", "actions": [{}], "uuid": ""}])])
    assert out[0]["overrideReasons"] == [{"system": "s"}, {"code": "declined", "system": "s", "display": "declined"}]
    assert [sorted(s) for s in out[0]["suggestions"]] == [["label", "uuid"], ["label", "uuid"]]
    assert prune_empty(out) == out


def test_new_uuid_is_a_random_version_4_uuid_as_uuid4_writes_it():
    seen = set()
    for _ in range(2000):
        value = new_uuid()
        parsed = uuid.UUID(value)
        assert str(parsed) == value  # lower-case hex, 8-4-4-4-12
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        seen.add(value)
    assert len(seen) == 2000


FINISHED_ALIKE = [
    card("C-A", detail="d", overrideReasons=[{"system": "s", "code": "declined"}, {"system": "s", "code": "x", "display": "X"}],
         links=[{"label": "l", "url": "https://example.org", "type": "absolute"}],
         suggestions=[{"label": "Order", "isRecommended": True, "actions": [
             {"type": "create", "description": "Order it", "resource": VALID_MR}]}]),
    card("C-B", summary="x" * 200, selectionBehavior="at-most-one", overrideReasons=({"code": "c"},)),
    card("C-C", codes=("a", "b"), suggestions=[{"label": "Delete", "actions": [
        {"type": "delete", "description": "Stop", "resourceId": "MedicationRequest/1"}]}]),
    card("C-D", detail='ends in a quote"', extra={"empty": {}, "none": None}),
    card("C-E", summary=""),
    card("C-F", suggestions=[{"label": "Bad", "actions": [{"type": "create", "description": "d",
                                                          "resource": {"resourceType": "Nope"}}]}]),
]


def test_finished_cards_are_those_of_the_deep_pruned_copy(monkeypatch):
    """_pruned_card (no deep copy when nothing is empty) finishes every card as
    prune_empty's copy does, and leaves the cards given unchanged."""
    import copy

    from cds_service.protocol import responses

    given = copy.deepcopy(FINISHED_ALIKE)
    fast = finish_cards(given)
    assert given == FINISHED_ALIKE
    monkeypatch.setattr(responses, "_pruned_card", prune_empty)
    slow = finish_cards(copy.deepcopy(FINISHED_ALIKE))

    def without_uuids(value):
        if isinstance(value, dict):
            return {k: without_uuids(v) for k, v in value.items() if k != "uuid"}
        return [without_uuids(v) for v in value] if isinstance(value, (list, tuple)) else value

    assert without_uuids(fast) == without_uuids(slow) and len(fast) == 5  # C-E has no summary
    assert [sorted(c) for c in fast] == [sorted(c) for c in slow]


def test_a_card_with_nothing_empty_is_not_copied_deep():
    from cds_service.protocol.responses import _pruned_card

    given = FINISHED_ALIKE[0]
    pruned = _pruned_card(given)
    assert pruned == given and pruned is not given
    assert pruned["source"] is given["source"]  # shared: finish_card does not change it
    assert pruned["overrideReasons"][0] is not given["overrideReasons"][0]  # copied: finish_card fills display
