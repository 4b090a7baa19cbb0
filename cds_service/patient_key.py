"""The keyed hash that ties an issued card to its patient without saying who
the patient is: HMAC-SHA256 over the request's fhirServer and patient id,
keyed with a server secret (CDS_PATIENT_HASH_SECRET). A call without
fhirServer passes the verified client's issuer and tenant in its place
(protocol.hooks._patient_namespace).

Feedback names only a card uuid; the hash stored with that card lets the
service quiet the card for the same patient later. Without the secret the
hash cannot be recomputed from a guessed patient id, so the database alone
does not reveal whose cards it holds.

Production must be given the secret (config.check_serving). The development
profile makes one: kept in a file beside a SQLite database, so quieting
survives a restart and every worker on the machine uses the same key; for
another database, one per process (with a warning), as there is no shared
place to keep it.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import secrets
import tempfile
from pathlib import Path

import sqlalchemy as sa

from cds_service.config import Settings

log = logging.getLogger(__name__)


def patient_key(secret: bytes, fhir_server: str | None, patient_id: str) -> str:
    """64 hex characters. The same patient id on two FHIR servers is two patients."""
    message = f"{(fhir_server or '').rstrip('/')}\x00{patient_id}".encode()
    mac = _keyed(secret).copy()
    mac.update(message)
    return mac.hexdigest()


@functools.lru_cache(maxsize=4)
def _keyed(secret: bytes) -> hmac.HMAC:
    """An HMAC keyed with `secret` and fed nothing, to copy: keying (hashing
    the padded key into both inner and outer states) is then done once, not
    per call. The same digest as hmac.new(secret, message, sha256)."""
    return hmac.new(secret, digestmod=hashlib.sha256)


def resolve_secret(settings: Settings) -> bytes:
    if settings.patient_hash_secret:
        return settings.patient_hash_secret.encode()
    if not settings.development:  # config.check_serving refuses this first
        raise RuntimeError("CDS_PATIENT_HASH_SECRET is not set")
    path = _secret_file(settings.database_url)
    if path is None:
        log.warning("development profile without CDS_PATIENT_HASH_SECRET and no SQLite file: "
                    "a key for this process only; quieting by feedback ends with the process")
        return secrets.token_hex(32).encode()
    return _read_or_create(path)


def _secret_file(database_url: str) -> Path | None:
    url = sa.engine.make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(f"{url.database}.patient-hash-secret")


def _read_or_create(path: Path) -> bytes:
    """Workers starting together must agree: the first to link its file in
    place wins (a hard link never replaces an existing file), the others read it."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".patient-hash-")  # mode 0600
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
            try:
                os.link(tmp, path)
                log.info("development profile: made a patient-hash secret beside the database")
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
    return path.read_text().strip().encode()
