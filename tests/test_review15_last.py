"""The fifteenth clinical re-review's last fixes (charts rebuilt with tests.test_rules_second_pass's
helpers and judged by the engine as the app runs it, strict; dates count back from TODAY): each
with a chart that shows the fix and a quiet control."""

from __future__ import annotations

import pytest

from tests.test_review14_misc import _vitd
from tests.test_rules_second_pass import cards as cards_of

# ---------------------------------------------------------------------------
# 2. A 25-OH vitamin D bound in nmol/L at the SI cut-off: "<75 nmol/L" is the form of "<30 ng/mL"
# (TX-8; AACE20: target at least 30 ng/mL, 75 nmol/L). It converted to 30.05 ng/mL and drew no card.
# ---------------------------------------------------------------------------


def test_vitamin_d_below_75_nmol_is_insufficient():
    card = cards_of(_vitd("<75 nmol/L"))["C-VITD-LOW"]
    assert card["indicator"] == "info" and card["summary"].startswith("Vitamin D insufficient")
    assert "is below 30 ng/mL (reported as <30, so possibly below 20)" in card["detail"]


def test_vitamin_d_below_50_nmol_stays_deficient():
    """Quiet control: the lower SI cut-off, as before."""
    assert cards_of(_vitd("<50 nmol/L"))["C-VITD-LOW"]["summary"].startswith("Vitamin D deficient")


@pytest.mark.parametrize("text", ["<80 nmol/L", "<76 nmol/L"])
def test_vitamin_d_bound_above_75_nmol_draws_no_card(text):
    """Quiet control: a bound above the SI cut-off may be at target."""
    assert "C-VITD-LOW" not in cards_of(_vitd(text))
