"""Every fixture patient through the real HTTP endpoint, against its own
expect/forbid tags (fhir_fixtures/README.md), with dates shifted to today so
the fixtures never go stale; and the catalogue's promises about them."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest

from cds_service import fixtures as fx
from cds_service.card_render import data_dir
from cds_service.protocol import schemas
from cds_service.rules.base import HOOKS
from cds_service.rules.catalogue import CATALOGUE

SERVICE_IDS = {"patient-view": "osteoporosis-patient-view", "order-select": "osteoporosis-order-select",
               "order-sign": "osteoporosis-order-sign"}
TODAY = dt.date.today()  # deliberately not the anchor date: proves the shifting
# "About 80 words" (second-pass 7): the richest fixture (every rehabilitation note at once) may run over a little.
INFO_DETAIL_MAX_WORDS = 95


def hook_body(bundle, hook):
    prefetch = fx.prefetch_from_bundle(bundle)
    pid = prefetch["patient"]["id"]
    context = {"patientId": pid, "userId": "Practitioner/example"}
    if hook != "patient-view":
        context["draftOrders"] = fx.draft_orders_bundle(bundle)
        if hook == "order-select":
            context["selections"] = [f"{r['resourceType']}/{r['id']}" for r in fx.drafts_from_bundle(bundle)
                                     if fx.is_selected(r)]
    return {"hookInstance": str(uuid.uuid4()), "hook": hook, "context": context, "prefetch": prefetch}


def _cases():
    for name in fx.patient_names():
        bundle = fx.load_patient(name, today=TODAY)
        for hook in HOOKS:
            if any(fx.expectations(bundle, hook)) or fx.care_up_to_date(bundle, hook):
                yield name, hook


CASES = list(_cases())


@pytest.mark.parametrize("name,hook", CASES)
def test_fixture_expectations_through_http(make_app, name, hook):
    # The tags say what the rules choose: the info-card budget (tested in
    # test_quiet_by_default.py) is lifted so every chosen card is seen.
    client = make_app(CDS_INFO_CARD_BUDGET="1000", CDS_ROUTINE_CARD_BUDGET="1000").test_client()
    bundle = fx.load_patient(name, today=TODAY)
    body = hook_body(bundle, hook)
    resp = client.post(f"/cds-services/{SERVICE_IDS[hook]}", json=body)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert schemas.errors("CardsResponse", resp.get_json()) == []  # the OpenAPI contract, to the letter
    cards = resp.get_json()["cards"]
    fired = {c["source"]["topic"]["code"]: c["indicator"] for c in cards}
    must, must_not = fx.expectations(bundle, hook)
    assert must <= set(fired), f"{name}: expected {sorted(must)}, got {sorted(fired)}"
    assert not (must_not & set(fired)), f"{name}: must not fire {sorted(must_not & set(fired))}"
    assert len(cards) == len(fired), "a card id appeared twice"
    for card_id, indicator in fx.expected_indicators(bundle, hook).items():
        assert fired[card_id] == indicator, f"{name}: {card_id} is {fired[card_id]}, expected {indicator}"
    for card in cards:  # second-pass 7: short info cards, the full text is on the guidance page
        if card["indicator"] == "info":
            words = len(re.findall(r"[A-Za-z0-9]\S*", card["detail"].split("**Patient data used")[0]))
            assert words <= INFO_DETAIL_MAX_WORDS, f"{name}: {card['source']['topic']['code']} detail has {words} words"
    if fx.care_up_to_date(bundle, hook):  # second-pass 7: everything done, so no info card at all
        assert [c for c, ind in fired.items() if ind == "info"] == [], f"{name}: care is up to date"
    for card_id, indicator in fired.items():
        hooks, indicators = CATALOGUE[card_id]
        assert hook in hooks and indicator in indicators, f"{card_id} {indicator} on {hook} is not in the catalogue"
    for card in cards:
        offered = []  # each suggestion's orders: no card offers the same orders twice
        for suggestion in card.get("suggestions", ()):
            offered.append(sorted(repr(action.get("resource")) for action in suggestion["actions"]))
            for action in suggestion["actions"]:
                if "resource" in action:
                    assert action["resource"]["subject"]["reference"] == f"Patient/{body['context']['patientId']}"
        assert len(offered) == len({tuple(o) for o in offered}), \
            f"{name}: {card['source']['topic']['code']} offers the same orders in two suggestions"


def implemented_cards():
    return sorted(p.stem for p in (data_dir() / "cards").glob("C-*.yaml"))


def test_every_catalogue_card_is_implemented():
    """Brief section 7 plus the added ids: each has its card template."""
    assert sorted(CATALOGUE) == implemented_cards()


@pytest.mark.parametrize("card_id", implemented_cards())
def test_each_card_has_a_firing_and_a_quiet_fixture_on_each_of_its_hooks(card_id):
    hooks, _ = CATALOGUE[card_id]
    for hook in hooks:
        fires = quiet = 0
        for name in fx.patient_names():
            must, must_not = fx.expectations(fx.load_patient(name, today=TODAY), hook)
            fires += card_id in must
            quiet += card_id in must_not
        assert fires and quiet, f"{card_id} on {hook}: {fires} firing and {quiet} quiet fixtures"


def test_there_are_care_up_to_date_fixtures():
    """Issue 12: treated and untreated patients whose care is done, checked above for zero info cards."""
    names = [n for n in fx.patient_names() if fx.care_up_to_date(fx.load_patient(n, today=TODAY), "patient-view")]
    assert len(names) >= 3, names
