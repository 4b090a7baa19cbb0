"""A CDS client of the tests' own: its key pair, a trust file naming it, and
tokens it signs (ES384, as CDS Hooks asks)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

ISS = "https://ehr.example.org"
BASE = "https://cds.example.org"


def client_key() -> tuple:
    """(private key, public JWK with kid "k1")."""
    private = ec.generate_private_key(ec.SECP384R1())
    public = json.loads(jwt.get_algorithm_by_name("ES384").to_jwk(private.public_key()))
    public.update(kid="k1", alg="ES384", use="sig")
    return private, public


def trust_file(path: Path, key) -> str:
    """A CDS_TRUSTED_ISSUERS file trusting `key` for ISS; returns its path."""
    path.write_text(json.dumps({ISS: {"jwks": {"keys": [key[1]]}}}))
    return str(path)


def token(key, path: str, **claims) -> str:
    """A valid token for a call to BASE + path; `claims` override or add."""
    now = int(time.time())
    body = {"iss": ISS, "aud": BASE + path, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4()),
            "tenant": "hospital-a"}
    body.update(claims)
    return jwt.encode(body, key[0], algorithm="ES384", headers={"kid": "k1", "typ": "JWT"})


def auth(tok: str) -> dict:
    return {"Authorization": f"Bearer {tok}"}
