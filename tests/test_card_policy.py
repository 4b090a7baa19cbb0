"""The card policy on its own: trigger dates, quieting, the info budget and
the order of value (second-pass section 7)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cds_service import card_policy
from cds_service.card_policy import CardPolicy, apply, is_quieted
from cds_service.rules.base import Finding, trigger_date, trigger_tokens
from cds_service.rules.catalogue import CATALOGUE, UNRANKED_TIER, VALUE_TIERS, value_rank
from cds_service.store import QuietMark

TODAY = dt.date(2025, 6, 1)
D = dt.date.fromisoformat


def test_trigger_is_the_newest_past_date_in_the_facts():
    f = Finding("C-X", facts=("Lumbar spine T-score -2.7 on 2024-02-01", "Fracture on 2025-03-15",
                              "Age 76 on 2025-06-01", "Next DXA due 2026-01-01", "Not a date 2025-13-45"))
    assert trigger_date(f, TODAY) == D("2025-03-15")  # today's and future dates are not data
    assert trigger_date(Finding("C-X", facts=("No DXA on file",)), TODAY) is None


def test_a_rule_may_give_its_trigger():
    f = Finding("C-X", facts=("Fracture on 2025-03-15",), trigger=D("2024-01-01"))
    assert trigger_date(f, TODAY) == D("2024-01-01")


def test_quieted_unless_critical_escalated_or_newly_triggered():
    mark = QuietMark(indicator="info", issued_on=D("2025-04-01"))
    old = Finding("C-X", facts=("eGFR 60 on 2025-03-01",))
    new = Finding("C-X", facts=("eGFR 60 on 2025-04-02",))
    assert is_quieted(old, "info", mark, TODAY)
    assert is_quieted(Finding("C-X"), "info", mark, TODAY)  # nothing dated: stays quiet
    assert not is_quieted(new, "info", mark, TODAY)  # data newer than the card acted on
    # Data of the day the card was issued is what the clinician saw: not new.
    assert is_quieted(Finding("C-X", facts=("eGFR 60 on 2025-04-01",)), "info", mark, TODAY)
    assert not is_quieted(old, "warning", mark, TODAY)  # more severe than what was acted on
    assert not is_quieted(old, "critical", QuietMark("critical", D("2025-04-01")), TODAY)
    assert is_quieted(old, "info", QuietMark("warning", D("2025-04-01")), TODAY)
    assert not is_quieted(old, "info", None, TODAY)


def _indicators(mapping):
    return lambda f: mapping[f.card_id]


def test_budget_keeps_the_most_valuable_info_cards_and_every_other():
    findings = [Finding(c) for c in ("C-SAFE-RENAL", "C-EXERCISE", "C-SUPP-CAVD", "C-MON-DXA-DUE", "C-TX-BP")]
    indicator = _indicators({"C-SAFE-RENAL": "warning", "C-EXERCISE": "info", "C-SUPP-CAVD": "info",
                             "C-MON-DXA-DUE": "info", "C-TX-BP": "info"})
    shown, held = apply(findings, TODAY, CardPolicy(info_budget=2), indicator)
    assert [f.card_id for f in shown] == ["C-SAFE-RENAL", "C-TX-BP", "C-MON-DXA-DUE"]
    assert {(h.card_id, h.reason) for h in held} == {("C-SUPP-CAVD", card_policy.OVER_BUDGET),
                                                     ("C-EXERCISE", card_policy.OVER_BUDGET)}
    shown, _ = apply(findings, TODAY, CardPolicy(info_budget=0), indicator)
    assert [f.card_id for f in shown] == ["C-SAFE-RENAL"]


def test_quieted_cards_free_their_budget_slot():
    findings = [Finding("C-TX-BP"), Finding("C-SUPP-CAVD"), Finding("C-EXERCISE")]
    policy = CardPolicy(quiet={"C-TX-BP": QuietMark("info", D("2025-05-01"))}, info_budget=2)
    shown, held = apply(findings, TODAY, policy, lambda f: "info")
    assert [f.card_id for f in shown] == ["C-SUPP-CAVD", "C-EXERCISE"]
    assert [(h.card_id, h.reason) for h in held] == [("C-TX-BP", card_policy.QUIETED)]


def test_order_of_value_tiers():
    """Drug decisions, then tests a decision waits on, then unranked ids, then routine."""
    names = [name for name, _ in VALUE_TIERS]
    assert names.index("drug decision") < names.index("test or lab a decision waits on") < UNRANKED_TIER \
        < names.index("routine")
    assert value_rank("C-TX-BP") < value_rank("C-MON-DXA-DUE") < value_rank("C-NEW-CARD") < value_rank("C-EXERCISE")
    assert value_rank("C-GIOP")[0] == names.index("test or lab a decision waits on")
    ids = [card_id for _, tier in VALUE_TIERS for card_id in tier]
    assert len(ids) == len(set(ids))


def test_every_info_card_has_a_place_in_the_order_of_value():
    """A new info id must be ranked on purpose (the unranked place is a fallback)."""
    ranked = {card_id for _, tier in VALUE_TIERS for card_id in tier}
    info_ids = {card_id for card_id, (_, indicators) in CATALOGUE.items() if "info" in indicators}
    assert info_ids - ranked == set()


def test_readme_order_of_value_is_current():
    from cds_service.cli import value_order_table

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("<!-- value-order:start -->\n", 1)[1].split("\n<!-- value-order:end -->", 1)[0]
    assert block == value_order_table(), "run `python tools/sync_readme.py`"


def test_a_finding_placed_in_a_higher_tier_is_not_routine_this_time():
    """Finding.tier: the falls card right after a fall or fracture ranks with the test cards, so
    it is shown beside a drug card instead of waiting for its turn; other routine cards still wait."""
    from cds_service.rules.catalogue import TEST_TIER

    findings = [Finding("C-TX-BP"), Finding("C-EXERCISE"), Finding("C-FALLS", tier=TEST_TIER)]
    shown, held = apply(findings, TODAY, CardPolicy(info_budget=2, routine_budget=1), lambda f: "info")
    assert [f.card_id for f in shown] == ["C-TX-BP", "C-FALLS"]
    assert [h.card_id for h in held] == ["C-EXERCISE"]
    shown, _ = apply([Finding("C-TX-BP"), Finding("C-EXERCISE"), Finding("C-FALLS")], TODAY,
                     CardPolicy(info_budget=2, routine_budget=1), lambda f: "info")
    assert [f.card_id for f in shown] == ["C-TX-BP"]
    assert value_rank("C-MON-DXA-DUE") < value_rank("C-FALLS", TEST_TIER) < value_rank("C-NEW-CARD")


def test_a_new_trigger_token_wakes_a_quieted_card_whatever_its_date():
    """Review 21: a token (rules.base.trigger_tokens) the card acted on did not rest on is a
    new trigger even with no newer date; tokens it rested on, or fewer, are not. A mark
    without keys (feedback stored before they were kept) goes by the date alone."""
    codes = frozenset({"M81.0", "S32.010A", "I10"})
    old = Finding("C-X", facts=("Osteoporosis (M81.0) on 2020-01-01",))
    back_dated = Finding("C-X", facts=("Osteoporosis (M81.0) on 2020-01-01",
                                       "Vertebral fracture (S32.010A) on 2019-05-01."))
    mark = QuietMark("info", D("2025-04-01"), keys=frozenset({"code:M81.0"}))

    def keys(f):
        return trigger_tokens(f, codes)

    assert keys(back_dated) == {"code:M81.0", "code:S32.010"}  # a full stop is no part of a code
    assert is_quieted(old, "info", mark, TODAY, keys)
    assert is_quieted(Finding("C-X"), "info", mark, TODAY, keys)  # fewer: nothing new
    assert not is_quieted(back_dated, "info", mark, TODAY, keys)
    assert is_quieted(back_dated, "info", QuietMark("info", D("2025-04-01")), TODAY, keys)  # no keys: date alone
    assert is_quieted(back_dated, "info", mark, TODAY)  # no tokens given: date alone
    # A follow-up visit's code (7th character D, S) is the same fracture: no new token.
    fx_codes = frozenset({"S72.001A", "S72.001D", "M80.08XA"})
    assert trigger_tokens(Finding("C-X", facts=("Hip fracture (S72.001A, S72.001D) on 2024-01-01",)), fx_codes) == {
        "code:S72.001"}
    assert trigger_tokens(Finding("C-X", facts=("(M80.08XA)",)), fx_codes) == {"code:M80.08X"}
    # A code the record does not hold is no token (a number in a fact is not a code).
    assert trigger_tokens(Finding("C-X", facts=("Hypertension (I10)", "eGFR 34 on 2025-01-01 (N18.3)")),
                          codes) == {"code:I10"}
    # A rule's own tokens replace those its facts quote.
    assert trigger_tokens(Finding("C-X", facts=("(I10)",), trigger_codes=("kidney:severe",)), codes) == {
        "kidney:severe"}
    # Through apply, with the tokens hashed as the store keeps them (CardPolicy.key_of).
    policy = CardPolicy(quiet={"C-X": QuietMark("info", D("2025-04-01"), keys=frozenset({"h:code:M81.0"}))},
                        key_of=lambda token: f"h:{token}")
    assert apply([old], TODAY, policy, lambda f: "info", tokens=keys)[0] == []
    assert apply([back_dated], TODAY, policy, lambda f: "info", tokens=keys)[0] == [back_dated]


def test_kidney_band_tokens_wake_on_a_worse_band_only():
    from cds_service.rules.facts import FAILURE, MEASURED, SEVERE, UNKNOWN, KidneyReading, kidney_band_tokens

    def band(b):
        return frozenset(kidney_band_tokens(KidneyReading(b, None, "eGFR", (), False, False)))

    assert band(MEASURED) < band(SEVERE) < band(FAILURE)  # worse: a new token; better: none
    assert band(UNKNOWN) == frozenset()
