"""The twelfth round of clinical fixes: each with a chart that makes the fixed rule fire and a
quiet control. Charts are built with tests.test_rules_second_pass's helpers and judged by the
engine as the app runs it (engine.evaluate, strict); dates count back from TODAY."""

from __future__ import annotations

import pytest

from tests.test_review10_clinical import _alendronate, _giop
from tests.test_rules_second_pass import DMAB, ROMO, given, med

# ---------------------------------------------------------------------------
# 1. C-GIOP offered alendronate beside C-DMAB-STOP (denosumab stopped) and C-ANABOLIC-FOLLOW-ON
# (an anabolic course over): those cards own the next drug (brief SAFE-14 as second-pass 3
# corrects it; SAFE-12, ACP23 Rec 3), as the engine leaves it to them over the drug-start cards
# (engine.COURSE_CARDS). C-GIOP keeps its DXA and calcium/vitamin D (second-pass 5, ACR22).
# ---------------------------------------------------------------------------

_STOPPED = (med(DMAB, 190, "stopped"), given(DMAB, 190))  # stopped, next dose due
_ROMO_DONE = tuple(given(ROMO, 130 + 30 * i) for i in range(12))  # 12 doses, the last 130 days ago


@pytest.mark.parametrize("course, course_card, words", [
    (_STOPPED, "C-DMAB-STOP", "Denosumab was stopped: the follow-on bisphosphonate is on the denosumab-stop card"),
    (_ROMO_DONE, "C-ANABOLIC-FOLLOW-ON", "The anabolic course is over: the antiresorptive to follow it is on the"),
])
def test_giop_leaves_the_next_drug_to_the_course_card(course, course_card, words):
    got = cards_of(_giop(*course))
    assert course_card in got
    card = got["C-GIOP"]
    assert not _alendronate(card) and "offered below" not in card["detail"]
    assert words in card["detail"]
    assert "A bone drug is on board" not in card["detail"]


def test_giop_still_offers_alendronate_with_no_course_card():
    """Quiet control: the same GIOP chart with no denosumab or anabolic on record."""
    got = cards_of(_giop())
    assert not {"C-DMAB-STOP", "C-ANABOLIC-FOLLOW-ON"} & set(got)
    assert _alendronate(got["C-GIOP"])


def cards_of(rec):
    from tests.test_rules_second_pass import cards
    return cards(rec)
