"""The thirteenth review's smaller card fixes (a clinical reviewer's charts, rebuilt here with
tests.test_rules_second_pass's helpers and judged by the engine as the app runs it): each with a
chart that shows the fix and a quiet control."""

from __future__ import annotations

import pytest

from cds_service.fhir import terminology as t
from tests.conftest import coding
from tests.test_rules_second_pass import cards, record, sr

# ---------------------------------------------------------------------------
# C-MASSAGE-SAFETY, critical for manipulation near fragile bone (second-pass 6; SEED 002: avoid
# joint mobilisation near osteoporotic regions). A chiropractic or osteopathic manipulation code
# is the manipulation itself: "the same order, with no manipulation in its note" contradicts the
# order, so removing it is the only suggestion. Manual therapy (97140) can be done without
# mobilising, so the order with the precautions stays an option beside removal.
# ---------------------------------------------------------------------------


def _suggestion_types(code):
    card = cards(record(drafts=[sr(coding(t.CPT, code))]), "order-sign")["C-MASSAGE-SAFETY"]
    assert card["indicator"] == "critical"
    return [[a["type"] for a in s["actions"]] for s in card["suggestions"]]


@pytest.mark.parametrize("code", ["98940", "98941", "98942", "98925", "98929"])
def test_spinal_manipulation_is_only_offered_for_removal(code):
    assert _suggestion_types(code) == [["delete"]]


def test_manual_therapy_keeps_the_order_with_precautions_as_an_option():
    assert _suggestion_types("97140") == [["delete"], ["update"]]
