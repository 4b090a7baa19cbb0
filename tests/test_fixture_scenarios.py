"""Every fixture through the real service entry points, against its own
expect/forbid tags (fhir_fixtures/README.md)."""

import datetime as dt

import pytest

from cds_service import fixtures as fx
from cds_service.rules.base import HOOKS
from cds_service.services import HookCall, order_select, order_sign, patient_view

SERVICES = {"patient-view": patient_view, "order-select": order_select, "order-sign": order_sign}
# Not the anchor date: proves the shifting works.
TODAY = dt.date.today()


def call_for(name, hook, settings):
    bundle = fx.load_patient(name, today=TODAY)
    pid = fx.prefetch_from_bundle(bundle)["patient"]["id"]
    context = {"patientId": pid, "userId": "Practitioner/example"}
    if hook != "patient-view":
        context["draftOrders"] = fx.draft_orders_bundle(bundle)
        if hook == "order-select":
            context["selections"] = [f"{r['resourceType']}/{r['id']}" for r in fx.drafts_from_bundle(bundle)]
    return bundle, HookCall(SERVICES[hook].SERVICE.id, hook, "instance-1", context,
                            fx.prefetch_from_bundle(bundle), TODAY, settings)


CASES = [(name, hook) for name in fx.patient_names() for hook in HOOKS
         if any(fx.expectations(fx.load_patient(name, today=TODAY), hook))]


@pytest.mark.parametrize("name,hook", CASES)
def test_fixture_expectations(name, hook, settings):
    bundle, call = call_for(name, hook, settings)
    cards = SERVICES[hook].evaluate(call)
    fired = [c["source"]["topic"]["code"] for c in cards]
    must, must_not = fx.expectations(bundle, hook)
    assert must <= set(fired), f"{name}: expected {must}, got {fired}"
    assert not (must_not & set(fired)), f"{name}: must not fire {must_not & set(fired)}"
    assert len(fired) == len(set(fired))
    for card in cards:
        for s in card.get("suggestions", ()):
            for a in s["actions"]:
                if "resource" in a:
                    assert a["resource"]["subject"]["reference"] == f"Patient/{call.context['patientId']}"


def test_each_implemented_card_has_a_firing_and_a_quiet_fixture():
    for card_id in ("C-TX-BP", "C-SUPP-CAVD"):
        fires = quiet = 0
        for name in fx.patient_names():
            must, must_not = fx.expectations(fx.load_patient(name, today=TODAY), "patient-view")
            fires += card_id in must
            quiet += card_id in must_not
        assert fires and quiet, card_id
