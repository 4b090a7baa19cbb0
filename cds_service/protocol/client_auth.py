"""Who is calling: the web side of CDS client authentication.

The JWT checks themselves live in protocol/auth.py (no Flask there). Here a
refusal becomes a 401 JSON error with a WWW-Authenticate header (a 503 with
Retry-After when the client's key set could not be fetched); the reason
is logged, never the token. With CDS_AUTH_REQUIRED=false (the development
profile) calls go through, but a token that is present is still checked and
a failure is logged, so an integration engineer learns before production
that their client's token would be refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import g

from cds_service.config import Settings
from cds_service.protocol.auth import (AuthError, ClientAuthenticator, load_trusted_issuers, request_audience,
                                       request_host)
from cds_service.protocol.errors import ApiError
from cds_service.store import Store

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)


def make_authenticator(settings: Settings, store: Store, http: requests.Session,
                       on_failure: Callable[[str], None] = lambda reason: None):
    issuers = load_trusted_issuers(settings.trusted_issuers or None, settings.profile)
    verifier = ClientAuthenticator(
        issuers,
        jti_store=store.remember_jti,
        http_session=http,
        allow_legacy_algs=settings.allow_legacy_jwt_algs,
        max_lifetime_seconds=settings.jwt_max_lifetime_seconds,
    )

    def authenticate(request: Any, path: str):
        check_host(settings, request)
        header = request.headers.get("Authorization")
        if not settings.auth_required and not header:
            return None
        try:
            audience = request_audience(settings.public_base_url, request, path)
            context = verifier.authenticate(header, audience)
        except AuthError as exc:
            on_failure(exc.reason)
            if not settings.auth_required:
                log.info("client token would be refused in production", extra={"auth_reason": exc.reason})
                return None
            log.warning("client authentication failed", extra={"auth_reason": exc.reason})
            if exc.reason == "jwks_unavailable":
                # The client's key set could not be fetched: its token was not found
                # wrong, only not checked. Fail closed, but say it is ours (or its key
                # server's) to recover from, and when to try again, as for the database.
                raise ApiError(503, f"{exc.message}; the client's token cannot be verified until it can, "
                                    "please try again", code="jwks_unavailable", details={"reason": exc.reason},
                               headers={"Retry-After": str(exc.retry_after or 1)}) from None
            raise ApiError(
                401,
                exc.message,
                code="unauthorized",
                details={"reason": exc.reason},
                headers={"WWW-Authenticate": f'Bearer realm="cds-services", error="invalid_token", '
                                             f'error_description="{exc.reason}"'},
            ) from None
        g.issuer = context.issuer
        g.tenant = context.tenant
        return context

    return authenticate


def check_host(settings: Settings, request: Any) -> None:
    """400 when the request's root URL would be built from a Host header that is no
    host[:port] (werkzeug reads it as "": a card link `http:/guidance/...`, a JWT audience
    `http:///cds-services/...`). A name with "_" that werkzeug refuses ("cds_service:8000")
    is used as it stands (auth.request_host, the same for the audience and the links). With
    CDS_PUBLIC_BASE_URL set the Host is not used. Runs first on every CDS endpoint that
    checks the caller (discovery unless open, hooks, feedback), whether or not a token is required."""
    if (settings.public_base_url or "").strip() or request_host(request):
        return
    raise ApiError(400, "the Host header is missing or is not a valid host[:port], and CDS_PUBLIC_BASE_URL "
                        "is not set: the JWT audience and the cards' guidance links are built from it. "
                        "Behind a proxy or ingress, set CDS_PUBLIC_BASE_URL to the service's public base URL",
                   code="invalid_host", details=["Host"])
