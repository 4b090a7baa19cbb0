"""The keyed hash that ties an issued card to its patient without saying who
the patient is: HMAC-SHA256 over the patient's namespace and id, keyed with a
server secret (CDS_PATIENT_HASH_SECRET). The namespace
(protocol.hooks._patient_namespace) is the verified client's issuer and
tenant with the request's fhirServer when a client JWT was verified (so one
trusted EHR cannot quiet another's cards by naming its fhirServer), and the
fhirServer alone without authentication.

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
    """64 hex characters. The same patient id in two namespaces (FHIR servers,
    issuers) is two patients."""
    message = f"{(fhir_server or '').rstrip('/')}\x00{patient_id}".encode()
    mac = _keyed(secret).copy()
    mac.update(message)
    return mac.hexdigest()


def trigger_key(secret: bytes, patient: str, token: str) -> str:
    """What the store keeps of a trigger token (rules.base.trigger_tokens: a code such as
    "code:M81.0", a kidney band) of a card issued to the patient with key `patient`: 32 hex
    characters of an HMAC over both, with the server secret. Neither the code nor the patient
    can be read from it, and the same code gives another key for every patient (no counting
    which patients share a diagnosis)."""
    mac = _keyed(secret).copy()
    mac.update(f"trigger\x00{patient}\x00{token}".encode())
    return mac.hexdigest()[:32]


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
