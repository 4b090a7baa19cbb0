"""The card catalogue the service commits to (brief section 7, the ids
added in ../shared/clinical/README.md and the seven of second-pass.md):
card id -> hooks and indicators.

Acceptance tests and analytics key on these ids; a new rule gets a new id.
"""

from __future__ import annotations

PV = ("patient-view",)
ORDERS = ("order-select", "order-sign")
ALL = PV + ORDERS

# card id: (hooks it fires on, indicators it may carry)
CATALOGUE: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "C-TX-BP": (PV, ("info",)),
    "C-TX-DMAB-ALT": (PV, ("info",)),
    "C-TX-ANABOLIC": (PV, ("warning",)),
    "C-SUPP-CAVD": (ALL, ("info",)),
    "C-VITD-LOW": (ALL, ("warning", "info")),
    "C-LAB-BASELINE": (PV, ("info",)),
    "C-MON-DXA-DUE": (PV, ("info",)),
    "C-MON-ONTX": (PV, ("info",)),
    "C-MON-DXA-DUP": (ORDERS, ("warning",)),
    "C-SCREEN-DXA": (PV, ("info",)),
    "C-HOLIDAY": (PV, ("info",)),
    "C-SAFE-RENAL": (ALL, ("warning", "critical")),
    "C-SAFE-HYPOCA": (ORDERS, ("critical",)),
    "C-SAFE-ESOPH": (ORDERS, ("warning",)),
    "C-SAFE-ROMO-CV": (ALL, ("critical",)),  # second pass: also an MI or stroke during the course
    "C-SAFE-PTH-LIMIT": (ALL, ("warning",)),
    "C-SAFE-ROMO-LIMIT": (ALL, ("warning",)),
    "C-SAFE-ANABOLIC-CONTRA": (ORDERS, ("warning",)),
    "C-SAFE-DMAB-CKD": (ALL, ("warning", "critical")),  # second pass: critical on dialysis / CKD 5; "or due" on patient-view
    "C-ANABOLIC-FOLLOW-ON": (PV, ("warning",)),
    "C-DMAB-DUE": (PV, ("info",)),
    "C-DMAB-OVERDUE": (PV, ("critical",)),
    "C-DMAB-STOP": (PV, ("warning",)),
    "C-DUP-ANTIRES": (ALL, ("warning",)),
    "C-SECONDARY-EVAL": (PV, ("info",)),
    "C-LIFESTYLE": (PV, ("info",)),
    "C-EXERCISE": (PV, ("info",)),
    "C-FALLS": (PV, ("info",)),
    "C-MASSAGE-SAFETY": (ORDERS, ("warning", "critical")),
    # second pass (../shared/clinical/second-pass.md, "New card ids")
    "C-SAFE-PREGNANCY": (ALL, ("critical",)),
    "C-SAFE-PREDOSE-LABS": (ORDERS, ("warning",)),
    "C-SAFE-DOSE-INTERVAL": (ORDERS, ("warning",)),
    "C-DUP-ANABOLIC": (ALL, ("warning",)),
    "C-TX-FAILURE": (PV, ("warning",)),
    "C-AR-COMPLICATION": (ALL, ("warning",)),
    "C-GIOP": (PV, ("info", "warning")),
}


# --- Order of value, for the info-card budget (second-pass section 7) ----------
# At most CDS_INFO_CARD_BUDGET info cards are shown per patient-view; these
# tiers, most valuable first, decide which. Within a tier, the order written.
# Warning and critical cards are never dropped, so only ids that can be info
# need a place here (ids of issue 11 included ahead of their templates).
VALUE_TIERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # A drug decision: start, switch, holiday, the next dose or follow-on.
    ("drug decision", (
        "C-DMAB-DUE", "C-TX-FAILURE", "C-TX-BP", "C-TX-DMAB-ALT", "C-HOLIDAY", "C-AR-COMPLICATION",
        "C-SAFE-PREGNANCY", "C-SAFE-DOSE-INTERVAL", "C-DUP-ANABOLIC",
    )),
    # A test or lab that a decision waits on.
    ("test or lab a decision waits on", (
        "C-SAFE-PREDOSE-LABS", "C-LAB-BASELINE", "C-GIOP", "C-SECONDARY-EVAL", "C-MON-DXA-DUE",
        "C-SCREEN-DXA", "C-MON-ONTX",
    )),
    # An info id not placed in a tier: after the decision and test tiers, so a
    # new card cannot push out a ranked one, but ahead of the routine cards,
    # which the budget exists to hold back. Give every new info id a tier.
    ("not ranked", ()),
    # Routine care.
    ("routine", ("C-VITD-LOW", "C-SUPP-CAVD", "C-EXERCISE", "C-FALLS", "C-LIFESTYLE")),
)
UNRANKED_TIER = 2

_RANK = {card_id: (tier, i) for tier, (_, ids) in enumerate(VALUE_TIERS) for i, card_id in enumerate(ids)}


ROUTINE_TIER = next(i for i, (name, _) in enumerate(VALUE_TIERS) if name == "routine")


TEST_TIER = "test or lab a decision waits on"
_TIER_INDEX = {name: i for i, (name, _) in enumerate(VALUE_TIERS)}


def is_routine(card_id: str, tier: str | None = None) -> bool:
    """A routine-care card (calcium and vitamin D, exercise, falls, lifestyle), unless
    this finding was given a higher tier."""
    return value_rank(card_id, tier)[0] == ROUTINE_TIER


def value_rank(card_id: str, tier: str | None = None) -> tuple[int, int]:
    """Sort key, most valuable first: (tier, place in the tier). `tier` (a VALUE_TIERS
    name, from Finding.tier) places this finding at the end of that tier instead."""
    if tier is not None:
        index = _TIER_INDEX[tier]
        return index, len(VALUE_TIERS[index][1])
    return _RANK.get(card_id, (UNRANKED_TIER, 0))
