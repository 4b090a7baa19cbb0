"""The CDS services this application offers: one module per service.

A service names its hook, its discovery text, the prefetch templates it asks
the CDS client to fill, which of those keys the rules cannot do without (a
key that cannot be had leads to 412), and the function that turns one hook
call into cards. The web layer (cds_service.protocol) does everything else:
validation, prefetch fallback, card uuids, checks on the response, storage.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from cds_service.card_policy import CardPolicy
from cds_service.config import Settings
from cds_service.engine import Outcome


@dataclasses.dataclass(frozen=True)
class HookCall:
    """One validated hook invocation, with its prefetch complete."""

    service_id: str
    hook: str
    hook_instance: str
    context: Mapping[str, Any]
    # prefetch key -> FHIR resource (often a Bundle) or None for "no data"
    prefetch: Mapping[str, Any]
    today: dt.date
    settings: Settings
    fhir_server: str | None = None  # the request's fhirServer (absolute references are bound to it)
    # Quieting by feedback and the info budget (patient-view); the default shows every card chosen.
    policy: CardPolicy = CardPolicy()


# The outcome's cards are CDS Hooks cards as dicts, without uuids: the web
# layer adds card and suggestion uuids, strips empty values and validates
# suggested resources before anything is sent.
Evaluate = Callable[[HookCall], Outcome]


@dataclasses.dataclass(frozen=True)
class CdsService:
    id: str
    hook: str
    title: str
    description: str
    prefetch: Mapping[str, str]
    required_prefetch: frozenset[str]
    evaluate: Evaluate
    usage_requirements: str = ""

    def discovery_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "hook": self.hook,
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "prefetch": dict(self.prefetch),
        }
        if self.usage_requirements:
            entry["usageRequirements"] = self.usage_requirements
        return entry


def all_services() -> tuple[CdsService, ...]:
    # Imported here so each service module can import this one.
    from cds_service.services import order_select, order_sign, patient_view

    return (patient_view.SERVICE, order_select.SERVICE, order_sign.SERVICE)
