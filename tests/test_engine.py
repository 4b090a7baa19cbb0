from cds_service import engine
from cds_service.record import build_record
from cds_service.rules import base
from cds_service.rules.base import Finding
from tests.conftest import TODAY


def test_select_dedupes_keeps_one_drug_start_and_orders_by_severity():
    findings = [
        Finding("C-SUPP-CAVD"),
        Finding("C-TX-BP"),
        Finding("C-TX-ANABOLIC"),
        Finding("C-SUPP-CAVD", indicator="warning"),
        Finding("C-TX-DMAB-ALT"),
        Finding("C-SAFE-HYPOCA"),
    ]
    # indicators of templates that do not exist yet are given explicitly
    findings = [f if f.card_id in ("C-SUPP-CAVD", "C-TX-BP") or f.indicator else
                Finding(f.card_id, indicator={"C-TX-ANABOLIC": "warning", "C-TX-DMAB-ALT": "info",
                                              "C-SAFE-HYPOCA": "critical"}[f.card_id]) for f in findings]
    chosen = engine.select(findings)
    assert [f.card_id for f in chosen] == ["C-SAFE-HYPOCA", "C-SUPP-CAVD", "C-TX-ANABOLIC"]
    assert chosen[1].indicator == "warning"


def test_broken_rule_is_skipped(monkeypatch):
    def broken(record, today, settings):
        raise RuntimeError("boom")

    base.rules_for("order-sign")  # load the rule modules first, so they do not register into the patched list
    monkeypatch.setitem(base._REGISTRY, "order-sign", [broken])
    record = build_record({}, today=TODAY)
    assert engine.evaluate("order-sign", record, TODAY) == []
    try:
        engine.evaluate("order-sign", record, TODAY, strict=True)
    except RuntimeError:
        pass
    else:
        raise AssertionError("strict mode must re-raise")


def test_registration_per_hook():
    names = {h: [r.__name__ for r in base.rules_for(h)] for h in base.HOOKS}
    assert {"start_bisphosphonate", "calcium_vitamin_d"} <= set(names["patient-view"])
    for hook in ("order-select", "order-sign"):
        assert {"massage_safety", "dxa_duplicate", "calcium_vitamin_d_on_order"} <= set(names[hook])
        assert "calcium_vitamin_d" not in names[hook]
    assert {"renal_order", "hypocalcemia_order", "duplicate_antiresorptive_order"} <= set(names["order-select"])
    assert names["order-select"] == names["order-sign"]  # order-select and order-sign run the same checks
    assert "renal_order" not in names["patient-view"] and "renal_active" in names["patient-view"]


def test_course_cards_silence_drug_start_cards():
    """A due/overdue denosumab or anabolic follow-on card carries the drug
    decision itself; a 'start therapy' card beside it would contradict it."""
    for course in engine.COURSE_CARDS:
        chosen = engine.select([Finding("C-TX-BP"), Finding(course, indicator="warning"), Finding("C-SUPP-CAVD")])
        assert [f.card_id for f in chosen] == [course, "C-SUPP-CAVD"]
