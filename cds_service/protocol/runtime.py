"""What one running application holds: settings, store, allowlist, services."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app

from cds_service.config import Settings
from cds_service.fhir.allowlist import FhirServerAllowlist
from cds_service.services import CdsService
from cds_service.store import Store

if TYPE_CHECKING:
    import requests


@dataclasses.dataclass
class Runtime:
    settings: Settings
    store: Store
    allowlist: FhirServerAllowlist
    services: dict[str, CdsService]
    http: requests.Session  # in a running app, a LazySession (cds_service.app) standing for one
    # (request, audience path) -> None, raising ApiError(401) when the caller is not trusted
    authenticate: Callable[[Any, str], Any]
    patient_secret: bytes  # keys the patient hash stored with issued cards (cds_service.patient_key)


def runtime(app: Flask | None = None) -> Runtime:
    return (app or current_app).extensions["cds_runtime"]
