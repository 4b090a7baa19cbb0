"""Clinical rules, one module per clinical area (brief sections 2-6).

Rule modules register their rules with `cds_service.rules.base.rule` when
imported; `load_all()` imports every module listed in RULE_MODULES (the
engine calls it through `base.rules_for`). Add a new area module to the list.
This package __init__ imports nothing itself, so cds_service.record can use
cds_service.rules.settings without an import cycle.
"""

import importlib

RULE_MODULES = (
    "diagnosis",
    "treatment",
    "supplementation",
    "monitoring",
    "lifestyle",
    "exercise",
    "massage",
    "order_safety",
    "follow_up",
    "order_checks",
    "dosing",
    "on_therapy",
)


def load_all() -> None:
    for name in RULE_MODULES:
        importlib.import_module(f"{__name__}.{name}")
