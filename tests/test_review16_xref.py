"""Review 16: card texts named other cards ("see the vitamin D card", "(the kidney card)", "the
baseline-labs card orders the eGFR") that were not on the screen: the named card did not fire,
feedback quieted it, the routine-card budget held it back, or it belongs to another hook. A
clinician read a pointer to nothing. Now such words are a cross-reference (rules.base.CROSS_REF,
[[C-ID|beside|alone]]): the engine, after the card policy, keeps the pointer only when the named
card is on the same screen, and otherwise words that stand alone (what to do, not where to look).

The fixture-wide test is generic: NAMED maps each way a card text names a card to the card ids it
means, and any "<word> card" phrase in a shown card that NAMED does not know fails the test, so a
new pointer is caught (add it to NAMED, and write it as a cross-reference)."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from cds_service import card_render, engine
from cds_service import fixtures as fx
from cds_service.card_policy import CardPolicy
from cds_service.record import build_record, drafts_from_context
from cds_service.rules.base import HOOKS, Finding, cross_ref, resolve_cross_refs
from cds_service.rules.settings import ClinicalSettings
from cds_service.store import QuietMark

S = ClinicalSettings()
DAY = dt.date(2026, 11, 30)
PRODUCTION = {"info_budget": 2, "routine_budget": 1}

# How a card's text names another card -> the card ids it means (any one of them on the screen).
NAMED = {
    "vitamin D card": {"C-VITD-LOW"},
    "calcium and vitamin D card": {"C-SUPP-CAVD"},
    "kidney card": {"C-SAFE-DMAB-CKD"},
    "baseline-labs card": {"C-LAB-BASELINE"},
    "secondary-causes card": {"C-SECONDARY-EVAL"},
    "glucocorticoid card": {"C-GIOP"},
    "exercise card": {"C-EXERCISE"},
    "falls card": {"C-FALLS"},
    "denosumab due card": {"C-DMAB-DUE"},
    "denosumab overdue card": {"C-DMAB-OVERDUE"},
    "denosumab-stop card": {"C-DMAB-STOP"},
    "follow-on card": {"C-ANABOLIC-FOLLOW-ON"},
    "treatment card": {"C-TX-BP", "C-TX-ANABOLIC", "C-TX-DMAB-ALT"},
}
# "<word> card" that names no other card: the card itself, or cards in general.
SELF = {"this", "the", "a", "an", "each", "every", "one", "no", "any", "info", "that"}
_CARD_WORD = re.compile(r"(\S+) card\b")


def _text(card: dict) -> str:
    labels = " ".join(s["label"] for s in card.get("suggestions", ()))
    return re.sub(r"\s+", " ", f"{card['summary']} {card['detail']} {labels}")


def _named(card: dict) -> set[str]:
    """The NAMED phrases in a card's text; fails on a "<word> card" that NAMED does not know."""
    text = _text(card)
    found = set()
    for match in _CARD_WORD.finditer(text):
        if match[1].strip("(\"'").lower() in SELF:
            continue
        said = text[:match.end()].lower()
        known = [name for name in NAMED if said.endswith(name.lower())]
        assert known, (f"{card['source']['topic']['code']} names a card NAMED does not know: "
                       f"{text[max(0, match.start() - 40):match.end()]!r}")
        found.add(max(known, key=len))  # "calcium and vitamin D card", not "vitamin D card"
    return found


def _dangling(cards: list[dict]) -> list[tuple[str, str]]:
    shown = {c["source"]["topic"]["code"] for c in cards}
    return [(c["source"]["topic"]["code"], name) for c in cards for name in _named(c) if not NAMED[name] & shown]


def _records(name: str) -> list[tuple[str, object]]:
    """(hook, record) for a fixture patient on every hook, as the snapshot builds its requests
    (draft orders on order-select and order-sign, the selected ones on order-select)."""
    bundle = fx.load_patient(name, today=DAY)
    prefetch = fx.prefetch_from_bundle(bundle)
    out = []
    for hook in HOOKS:
        drafts, selections, draft_orders = (), None, None
        if hook != "patient-view":
            draft_orders = fx.draft_orders_bundle(bundle)
            drafts = drafts_from_context({"draftOrders": draft_orders})
            if hook == "order-select":
                selections = [f"{r['resourceType']}/{r['id']}" for r in fx.drafts_from_bundle(bundle)
                              if fx.is_selected(r)]
        out.append((hook, build_record(prefetch, drafts=drafts, today=DAY, selections=selections, settings=S,
                                       patient_id=prefetch["patient"]["id"],
                                       draft_orders=draft_orders if drafts else None)))
    return out


def test_no_fixture_chart_shows_a_card_naming_a_card_not_on_the_screen():
    """Every fixture patient on every hook: with no policy, under the production budget, under
    tight budgets (1 and 1, 0 and 0), and under the production budget with each named card that
    fires quieted (acted on today): no shown card names a card that is not shown beside it
    (before: 111 snapshot outcomes did: C-SUPP-CAVD's vitamin D card on order-select, C-DMAB-DUE's
    kidney card, C-SCREEN-DXA's glucocorticoid card, ...)."""
    targets = set().union(*NAMED.values())
    dangling: set[tuple[str, str, str, str]] = set()
    seen = 0
    for name, hook, record in ((n, h, r) for n in fx.patient_names() for h, r in _records(n)):
        base = engine.decide(hook, record, DAY, S, policy=None, strict=True).cards
        policies = {"none": None, "production": CardPolicy(**PRODUCTION),
                    "budget-1-1": CardPolicy(info_budget=1, routine_budget=1),
                    "budget-0-0": CardPolicy(info_budget=0, routine_budget=0)}
        for card in base:
            cid = card["source"]["topic"]["code"]
            if cid in targets:
                policies[f"quiet-{cid}"] = CardPolicy(quiet={cid: QuietMark(card["indicator"], DAY)}, **PRODUCTION)
        for label, policy in policies.items():
            cards = base if policy is None else engine.decide(hook, record, DAY, S, policy=policy, strict=True).cards
            seen += sum(bool(_named(c)) for c in cards)
            dangling.update((name, hook, label, f"{cid}: {named}") for cid, named in _dangling(cards))
    assert seen  # cards that name another card were shown (beside it)
    assert not dangling, sorted(dangling)[:20]


# --- the mechanism -----------------------------------------------------------------------------

def test_cross_ref_keeps_the_pointer_only_beside_the_named_card():
    text = "Replete it" + cross_ref("C-VITD-LOW", " (the vitamin D card)", " (cholecalciferol)") + "."
    assert resolve_cross_refs(text, {"C-VITD-LOW", "C-TX-BP"}) == "Replete it (the vitamin D card)."
    assert resolve_cross_refs(text, {"C-TX-BP"}) == "Replete it (cholecalciferol)."
    both = cross_ref("C-DMAB-DUE,C-DMAB-OVERDUE", "the denosumab card")
    assert resolve_cross_refs(both, {"C-DMAB-OVERDUE"}) == "the denosumab card"
    assert resolve_cross_refs(both, ()) == ""
    with pytest.raises(ValueError):
        cross_ref("C-VITD-LOW", "a | b")


def test_render_words_the_reference_for_the_screen_and_strict_checks_the_card_id():
    finding = Finding("C-SCREEN-DXA", facts=("Age 66 on 2026-11-30 " + cross_ref("C-GIOP", "(the glucocorticoid card)",
                                                                                 "(no glucocorticoid on record)"),),
                      variables={"headline": "DXA due", "advice": "Order a DXA."})
    alone = card_render.render(finding, patient_id="p", today=DAY, strict=True)
    beside = card_render.render(finding, patient_id="p", today=DAY, strict=True, shown={"C-GIOP"})
    assert "(no glucocorticoid on record)" in alone["detail"] and "glucocorticoid card" not in alone["detail"]
    assert "(the glucocorticoid card)" in beside["detail"] and "[[" not in beside["detail"]
    bad = Finding("C-SCREEN-DXA", facts=(cross_ref("C-NO-SUCH-CARD", "x"),),
                  variables={"headline": "DXA due", "advice": "Order a DXA."})
    with pytest.raises(card_render.CardTemplateError):
        card_render.render(bad, patient_id="p", today=DAY, strict=True)


def test_every_template_cross_reference_names_a_catalogue_card():
    """A cross-reference written in a card's YAML names card ids of the catalogue, and its
    brackets are well formed (a "[[" left over would reach the clinician)."""
    from cds_service.rules.base import CROSS_REF

    ids = set(card_render.card_ids())
    for cid in ids:
        raw = (card_render.data_dir() / "cards" / f"{cid}.yaml").read_text(encoding="utf-8")
        refs = CROSS_REF.findall(raw)
        assert raw.count("[[") == len(refs), cid
        for targets, _, _ in refs:
            assert set(targets.split(",")) <= ids, (cid, targets)


# --- charts of the review: the pointer beside the card, the words that stand alone without it ------

def _screen(name: str, hook: str, policy: CardPolicy | None) -> dict[str, dict]:
    record = dict(_records(name))[hook]
    return {c["source"]["topic"]["code"]: c
            for c in engine.decide(hook, record, DAY, S, policy=policy, strict=True).cards}


_VITD_QUIET = CardPolicy(quiet={"C-VITD-LOW": QuietMark("warning", DAY)}, **PRODUCTION)


def test_drug_card_names_the_vitamin_d_card_beside_it_and_the_regimen_without_it():
    """25-OH vitamin D 19.9 ng/mL: C-TX-BP says "(the vitamin D card)" beside C-VITD-LOW (quiet
    control: as before), and the repletion regimen once feedback quieted C-VITD-LOW."""
    beside = _screen("c-vitd-low-deficient-19-9-ng", "patient-view", CardPolicy(**PRODUCTION))
    assert "C-VITD-LOW" in beside
    assert "replete it when starting (the vitamin D card)." in beside["C-TX-BP"]["detail"]
    alone = _screen("c-vitd-low-deficient-19-9-ng", "patient-view", _VITD_QUIET)
    assert "C-VITD-LOW" not in alone
    assert ("replete it when starting (cholecalciferol 50,000 IU weekly for 8 weeks, or 6000 IU daily)."
            in alone["C-TX-BP"]["detail"])
    assert beside.keys() - {"C-VITD-LOW"} == alone.keys()  # only the wording changed


def test_calcium_card_on_an_order_hook_gives_the_repletion_regimen():
    """25-OH vitamin D 15 ng/mL on order-select with an alendronate draft: C-VITD-LOW is not on
    this screen, so C-SUPP-CAVD no longer says "see the vitamin D card" (the rule's own pointer,
    no policy) but gives the regimen; in CKD 4-5 it names no generic dose (review 16, suppfix)."""
    from tests.test_review16_text import _LABS
    from tests.test_rules_second_pass import ALN, draft, obs, record
    from tests.test_rules_second_pass import cards as second_pass_cards

    cards = second_pass_cards(record(obs("62292-8", 30, 15, "ng/mL", oid="vitd"), *_LABS, drafts=[draft(ALN)]),
                              "order-select")
    assert "C-SUPP-CAVD" in cards and "C-VITD-LOW" not in cards
    detail = cards["C-SUPP-CAVD"]["detail"]
    assert "vitamin D card" not in detail
    assert ("vitamin D repletion first (cholecalciferol 50,000 IU weekly for 8 weeks, or 6000 IU daily), then "
            "maintenance 800-1000 IU daily") in detail
    # Creatinine clearance 27 mL/min (CKD 4 by clearance, no eGFR): nephrology decides the dose.
    cards = _screen("enc-si-units-calcium-2-03-mmol-creatinine-115-umol-vitd-37-nmol", "order-select", None)
    detail = cards["C-SUPP-CAVD"]["detail"]
    assert "vitamin D card" not in detail and "50,000" not in detail
    assert "vitamin D repletion with nephrology (no generic dose in dialysis or CKD 4-5)" in detail


def test_denosumab_card_names_the_kidney_card_only_beside_it():
    """eGFR 25 with a denosumab dose due: C-DMAB-DUE's short CKD note names the kidney card beside
    it (quiet control) and the CKD-MBD plan's parts when C-SAFE-DMAB-CKD is quieted."""
    name = "c-dmab-due-egfr-25-prolia24-plan"
    beside = _screen(name, "patient-view", CardPolicy(**PRODUCTION))
    assert "C-SAFE-DMAB-CKD" in beside and "(the kidney card)." in beside["C-DMAB-DUE"]["detail"]
    alone = _screen(name, "patient-view", CardPolicy(quiet={"C-SAFE-DMAB-CKD": QuietMark("warning", DAY)},
                                                     **PRODUCTION))
    assert "C-SAFE-DMAB-CKD" not in alone
    assert ("the dose comes only with the CKD-MBD plan (CKD-MBD labs, calcium weekly for 4 weeks then monthly, "
            "nephrology).") in alone["C-DMAB-DUE"]["detail"]
