"""A stand-in CDS client for smoke tests: a key pair, the trust file that
trusts it, and client JWTs signed with it (`cds-service test-client ...`).

FOR TESTING ONLY. The private key lies unencrypted in a folder, and the
issuer name ends in .invalid so it can never be mistaken for a real EHR. A
real EHR signs its own JWTs; the operator only puts its public keys (or its
jku URL) in the trust file.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

ISSUER = "https://test-client.invalid"
KID = "test-client-1"
KEY_FILE = "test-client-key.pem"
TRUST_FILE = "trusted_issuers.json"


class TestClientError(Exception):
    """A problem with the folder or the key (one line for the operator)."""


def make_keys(folder: Path) -> tuple[Path, Path]:
    """Write an ES384 private key and a trust file naming its public key.
    Refuses to overwrite an existing key."""
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key_path, trust_path = folder / KEY_FILE, folder / TRUST_FILE
    if key_path.exists():
        raise TestClientError(f"{key_path} exists already; use another --dir or remove it")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP384R1())
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # owner-only
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
        public.update(kid=KID, use="sig", alg="ES384")
        trust_path.write_text(json.dumps({ISSUER: {"jwks": {"keys": [public]}}}, indent=2) + "\n")
    except OSError as exc:
        raise TestClientError(f"cannot write to {folder}: {exc.strerror or exc}") from None
    return key_path, trust_path


def make_token(folder: Path, audience: str, lifetime_seconds: int = 300) -> str:
    """A client JWT for one endpoint URL (the audience), valid for 5 minutes,
    with a fresh jti (the service accepts each jti once)."""
    import jwt

    key_path = folder / KEY_FILE
    try:
        pem = key_path.read_bytes()
    except OSError as exc:
        raise TestClientError(f"cannot read {key_path} ({exc.strerror or exc}); run "
                              f"`cds-service test-client keys --dir {folder}` first") from None
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": ISSUER, "aud": audience, "iat": now, "exp": now + lifetime_seconds,
              "jti": str(uuid.uuid4())}
    return jwt.encode(claims, pem, algorithm="ES384", headers={"kid": KID, "typ": "JWT"})
