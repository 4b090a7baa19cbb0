"""Tests of CDS Client authentication (cds_service.protocol.auth).

Keys are generated fresh per test session; nothing secret is checked in.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import jwt
import pytest
import requests
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cds_service.config import SettingsError
from cds_service.protocol.auth import (
    SANDBOX_ISSUER,
    SANDBOX_JKU,
    AuthContext,
    AuthError,
    ClientAuthenticator,
    IssuerConfig,
    expected_audience,
    load_trusted_issuers,
    normalize_url,
    request_audience,
)

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
ISS = "https://ehr.example.org"
JKU = "https://ehr.example.org/.well-known/jwks.json"
AUD = "https://cds.example.org/cds-services/osteoporosis-patient-view"
SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"


# --------------------------------------------------------------------------
# Fixtures: keys, a clock, a jti store


class Key:
    """A fresh key pair with its public JWK."""

    def __init__(self, private, alg: str, kid: str):
        self.private = private
        self.alg = alg
        self.kid = kid
        algo = jwt.get_algorithm_by_name(alg)
        self.jwk = json.loads(algo.to_jwk(private.public_key()))
        self.jwk.update(kid=kid, alg=alg, use="sig")

    def sign(self, claims: dict, **header) -> str:
        headers = {"kid": self.kid, "typ": "JWT", **header}
        headers = {k: v for k, v in headers.items() if v is not None}
        return jwt.encode(claims, self.private, algorithm=self.alg, headers=headers)


@pytest.fixture(scope="session")
def es384() -> Key:
    return Key(ec.generate_private_key(ec.SECP384R1()), "ES384", "ec-1")


@pytest.fixture(scope="session")
def rs384() -> Key:
    return Key(rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS384", "rsa-1")


@pytest.fixture(scope="session")
def attacker() -> Key:
    return Key(ec.generate_private_key(ec.SECP384R1()), "ES384", "evil-1")


class Clock:
    def __init__(self, start: datetime):
        self.t = start

    def __call__(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


class MemoryJtiStore:
    """What the database-backed store does, in memory."""

    def __init__(self):
        self.seen: dict[tuple[str, str], datetime] = {}

    def __call__(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        if (issuer, jti) in self.seen:
            return False
        self.seen[(issuer, jti)] = expires_at
        return True


def claims(**overrides) -> dict:
    base = {
        "iss": ISS,
        "aud": AUD,
        "iat": int(NOW.timestamp()),
        "exp": int((NOW + timedelta(minutes=5)).timestamp()),
        "jti": str(uuid.uuid4()),
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


@pytest.fixture
def issuers(es384, rs384) -> dict[str, IssuerConfig]:
    return {ISS: IssuerConfig(issuer=ISS, keys={es384.kid: es384.jwk, rs384.kid: rs384.jwk},
                              jku=frozenset({JKU}))}


@pytest.fixture
def store() -> MemoryJtiStore:
    return MemoryJtiStore()


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def auth(issuers, store, clock) -> ClientAuthenticator:
    return ClientAuthenticator(issuers, jti_store=store, http_session=requests.Session(), now=clock)


# --------------------------------------------------------------------------
# Refusals, table-driven


def _b64(data: bytes) -> str:
    return jwt.utils.base64url_encode(data).decode()


def _alg_none(k: Key) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": k.kid}).encode())
    payload = _b64(json.dumps(claims()).encode())
    return f"Bearer {header}.{payload}."


def _hs256_with_public_key(k: Key) -> str:
    # The classic confusion attack: HMAC keyed with the verifier's public key.
    # PyJWT refuses to sign with PEM bytes, so the JWS is assembled by hand.
    import hashlib
    import hmac
    pem = k.private.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = (_b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": k.kid}).encode())
                     + "." + _b64(json.dumps(claims()).encode()))
    sig = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"Bearer {signing_input}.{_b64(sig)}"


def _replayed(k: Key, auth: ClientAuthenticator) -> str:
    header = "Bearer " + k.sign(claims(jti="once-only"))
    auth.authenticate(header, AUD)  # first use is accepted
    return header


REFUSALS = [
    # (case id, expected reason, builder(es384, attacker, auth) -> Authorization header)
    ("no token", "missing_token", lambda k, a, auth: None),
    ("empty header", "missing_token", lambda k, a, auth: ""),
    ("basic scheme", "missing_token", lambda k, a, auth: "Basic dXNlcjpwYXNz"),
    ("malformed token", "malformed_token", lambda k, a, auth: "Bearer not-a-jwt"),
    ("garbage segments", "malformed_token", lambda k, a, auth: "Bearer a.b.c"),
    ("alg none", "unsupported_alg", lambda k, a, auth: _alg_none(k)),
    ("HS256 with public key", "unsupported_alg", lambda k, a, auth: _hs256_with_public_key(k)),
    ("unknown issuer", "unknown_issuer",
     lambda k, a, auth: "Bearer " + k.sign(claims(iss="https://evil.example"))),
    ("missing iss", "missing_claim", lambda k, a, auth: "Bearer " + k.sign(claims(iss=None))),
    ("unknown kid", "unknown_kid", lambda k, a, auth: "Bearer " + a.sign(claims())),
    ("missing kid", "missing_claim", lambda k, a, auth: "Bearer " + k.sign(claims(), kid=None)),
    ("jku off the allowlist", "jku_not_allowed",
     lambda k, a, auth: "Bearer " + a.sign(claims(), jku="https://evil.example/jwks.json")),
    ("jku lookalike path", "jku_not_allowed",
     lambda k, a, auth: "Bearer " + a.sign(claims(), jku=JKU + "/../../evil")),
    ("jku with credentials", "jku_not_allowed",
     lambda k, a, auth: "Bearer " + a.sign(claims(), jku="https://ehr.example.org@evil.example/.well-known/jwks.json")),
    ("signed by another key with our kid", "bad_signature",
     lambda k, a, auth: "Bearer " + a.sign(claims(), kid=k.kid)),
    ("wrong aud", "wrong_audience",
     lambda k, a, auth: "Bearer " + k.sign(claims(aud="https://cds.example.org/cds-services"))),
    ("aud with trailing slash", "wrong_audience",
     lambda k, a, auth: "Bearer " + k.sign(claims(aud=AUD + "/"))),
    ("missing aud", "missing_claim", lambda k, a, auth: "Bearer " + k.sign(claims(aud=None))),
    ("expired", "expired",
     lambda k, a, auth: "Bearer " + k.sign(claims(iat=int((NOW - timedelta(minutes=10)).timestamp()),
                                                   exp=int((NOW - timedelta(minutes=5)).timestamp())))),
    ("missing exp", "missing_claim", lambda k, a, auth: "Bearer " + k.sign(claims(exp=None))),
    ("iat in the future", "iat_in_future",
     lambda k, a, auth: "Bearer " + k.sign(claims(iat=int((NOW + timedelta(minutes=3)).timestamp())))),
    ("missing iat", "missing_claim", lambda k, a, auth: "Bearer " + k.sign(claims(iat=None))),
    ("nbf in the future", "not_yet_valid",
     lambda k, a, auth: "Bearer " + k.sign(claims(nbf=int((NOW + timedelta(minutes=3)).timestamp())))),
    # Short-lived tokens only (CDS_JWT_MAX_LIFETIME_SECONDS, 3600 by default).
    ("exp ten years ahead", "lifetime_too_long",
     lambda k, a, auth: "Bearer " + k.sign(claims(exp=int((NOW + timedelta(days=3650)).timestamp())))),
    ("iat in 1970", "lifetime_too_long", lambda k, a, auth: "Bearer " + k.sign(claims(iat=0))),
    ("iat a day back, exp still ahead", "lifetime_too_long",
     lambda k, a, auth: "Bearer " + k.sign(claims(iat=int((NOW - timedelta(days=1)).timestamp())))),
    ("replayed jti", "replayed_jti", lambda k, a, auth: _replayed(k, auth)),
    ("missing jti", "missing_claim", lambda k, a, auth: "Bearer " + k.sign(claims(jti=None))),
    ("typ not JWT", "malformed_token", lambda k, a, auth: "Bearer " + k.sign(claims(), typ="at+jwt")),
]


@pytest.mark.parametrize("case, reason, build", REFUSALS, ids=[c[0] for c in REFUSALS])
def test_refuses(case, reason, build, es384, attacker, auth):
    header = build(es384, attacker, auth)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as net:
        # The issuer's allowlisted JWKS publishes the same keys as its inline set.
        net.get(JKU, json={"keys": [es384.jwk]})
        with pytest.raises(AuthError) as info:
            auth.authenticate(header, AUD)
        # Only an unknown kid may look at the issuer's own (allowlisted) JWKS
        # for a rotated key; nothing else makes the service fetch anything.
        assert [c.request.url for c in net.calls] == ([JKU] if reason == "unknown_kid" else [])
    assert info.value.reason == reason, info.value.message
    token = (header or "").partition(" ")[2]
    if token:
        # Bearer tokens are credentials: never echoed.
        assert token not in info.value.message
        assert token not in str(info.value)


def test_es256_refused_unless_legacy_allowed(issuers, store, clock):
    key = Key(ec.generate_private_key(ec.SECP256R1()), "ES256", "ec256")
    cfg = {ISS: IssuerConfig(issuer=ISS, keys={key.kid: key.jwk})}
    token = "Bearer " + key.sign(claims())
    strict = ClientAuthenticator(cfg, jti_store=store, now=clock)
    with pytest.raises(AuthError) as info:
        strict.authenticate(token, AUD)
    assert info.value.reason == "unsupported_alg"
    legacy = ClientAuthenticator(cfg, jti_store=store, allow_legacy_algs=True, now=clock)
    assert legacy.authenticate(token, AUD).alg == "ES256"


def test_p256_key_cannot_verify_es384(store, clock):
    # A key on the wrong curve for the algorithm is refused, not tried.
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.get_algorithm_by_name("ES256").to_jwk(private.public_key()))
    jwk["kid"] = "p256"
    auth = ClientAuthenticator({ISS: IssuerConfig(issuer=ISS, keys={"p256": jwk})}, jti_store=store, now=clock)
    header = jwt.encode(claims(), ec.generate_private_key(ec.SECP384R1()), algorithm="ES384",
                        headers={"kid": "p256"})
    with pytest.raises(AuthError) as info:
        auth.authenticate("Bearer " + header, AUD)
    assert info.value.reason == "unsupported_alg"


def test_issuer_algorithm_restriction(es384, rs384, store, clock):
    cfg = {ISS: IssuerConfig(issuer=ISS, keys={rs384.kid: rs384.jwk}, algorithms=frozenset({"ES384"}))}
    auth = ClientAuthenticator(cfg, jti_store=store, now=clock)
    with pytest.raises(AuthError) as info:
        auth.authenticate("Bearer " + rs384.sign(claims()), AUD)
    assert info.value.reason == "unsupported_alg"


def test_refused_token_does_not_use_up_its_jti(es384, auth, store):
    jti = "keep-me"
    with pytest.raises(AuthError):
        auth.authenticate("Bearer " + es384.sign(claims(jti=jti, aud="https://other")), AUD)
    assert store.seen == {}
    assert auth.authenticate("Bearer " + es384.sign(claims(jti=jti)), AUD).jti == jti


def test_clock_skew_tolerated(es384, auth, clock):
    # 30 s after expiry is within the default 60 s skew; 90 s is not.
    token = es384.sign(claims(exp=int(NOW.timestamp())))
    clock.advance(30)
    auth.authenticate("Bearer " + token, AUD)
    clock.advance(60)
    with pytest.raises(AuthError) as info:
        auth.authenticate("Bearer " + es384.sign(claims(exp=int(NOW.timestamp()))), AUD)
    assert info.value.reason == "expired"


def test_lifetime_cap_is_inclusive_and_configurable(es384, issuers, store, clock):
    hour = claims(exp=int((NOW + timedelta(seconds=3600)).timestamp()))
    default = ClientAuthenticator(issuers, jti_store=store, now=clock)
    assert default.authenticate("Bearer " + es384.sign(hour), AUD).issuer == ISS  # exactly the cap: accepted
    strict = ClientAuthenticator(issuers, jti_store=store, now=clock, max_lifetime_seconds=300)
    assert strict.authenticate("Bearer " + es384.sign(claims()), AUD).issuer == ISS  # the sandbox's 5 minutes
    with pytest.raises(AuthError) as info:
        strict.authenticate("Bearer " + es384.sign(claims(exp=int((NOW + timedelta(seconds=301)).timestamp()))), AUD)
    assert info.value.reason == "lifetime_too_long" and "CDS_JWT_MAX_LIFETIME_SECONDS" in info.value.message


# --------------------------------------------------------------------------
# Acceptance


@pytest.mark.parametrize("which", ["es384", "rs384"])
def test_accepts_valid_token(which, request, auth, store):
    key: Key = request.getfixturevalue(which)
    ctx = auth.authenticate("Bearer " + key.sign(claims(jti="j-" + which, sub="client-42",
                                                        tenant="hospital-a")), AUD)
    assert ctx == AuthContext(issuer=ISS, subject="client-42", tenant="hospital-a",
                              jti="j-" + which, kid=key.kid, alg=key.alg)
    # Remembered until exp plus skew, under the issuer.
    assert store.seen[(ISS, "j-" + which)] == NOW + timedelta(minutes=5, seconds=60)


def test_accepts_like_the_sandbox(es384, auth):
    # The sandbox's shape: no sub, no tenant, no typ needed, aud as a list is also fine.
    ctx = auth.authenticate("Bearer " + es384.sign(claims(aud=[AUD]), typ=None), AUD)
    assert ctx.subject is None and ctx.tenant is None


def test_bearer_scheme_is_case_insensitive(es384, auth):
    auth.authenticate("bearer " + es384.sign(claims()), AUD)


# --------------------------------------------------------------------------
# jku fetching


@pytest.fixture
def remote_only(store, clock):
    """An issuer whose keys are only published at its jku."""
    cfg = {ISS: IssuerConfig(issuer=ISS, jku=frozenset({JKU}))}
    return ClientAuthenticator(cfg, jti_store=store, http_session=requests.Session(), now=clock,
                               jwks_cache_seconds=300, jwks_refetch_min_interval_seconds=30)


@responses.activate
def test_jku_fetched_once_and_cached(es384, remote_only, clock):
    responses.get(JKU, json={"keys": [es384.jwk]})
    for _ in range(3):
        remote_only.authenticate("Bearer " + es384.sign(claims(), jku=JKU), AUD)
        clock.advance(10)
    assert len(responses.calls) == 1
    # After the cache lifetime, the set is fetched again.
    clock.advance(300)
    remote_only.authenticate("Bearer " + es384.sign(claims(), jku=JKU), AUD)
    assert len(responses.calls) == 2


@responses.activate
def test_jku_normalised_match(es384, remote_only):
    responses.get(JKU, json={"keys": [es384.jwk]})
    remote_only.authenticate("Bearer " + es384.sign(claims(), jku="HTTPS://EHR.example.org:443/.well-known/jwks.json"), AUD)
    assert len(responses.calls) == 1


@responses.activate
def test_unknown_kid_refetch_is_rate_limited(es384, rs384, remote_only, clock):
    responses.get(JKU, json={"keys": [es384.jwk]})
    remote_only.authenticate("Bearer " + es384.sign(claims(), jku=JKU), AUD)
    assert len(responses.calls) == 1

    # The client rotates to a new key: the first token with the new kid
    # would trigger a refetch, but not within 30 s of the last fetch.
    responses.replace(responses.GET, JKU, json={"keys": [es384.jwk, rs384.jwk]})
    clock.advance(5)
    for _ in range(5):
        with pytest.raises(AuthError) as info:
            remote_only.authenticate("Bearer " + rs384.sign(claims(), jku=JKU), AUD)
        assert info.value.reason == "unknown_kid"
    assert len(responses.calls) == 1

    clock.advance(30)
    ctx = remote_only.authenticate("Bearer " + rs384.sign(claims(), jku=JKU), AUD)
    assert ctx.kid == rs384.kid
    assert len(responses.calls) == 2

    # A kid that is nowhere: one refetch at most per interval.
    clock.advance(31)
    for _ in range(5):
        with pytest.raises(AuthError):
            remote_only.authenticate("Bearer " + Key(ec.generate_private_key(ec.SECP384R1()), "ES384",
                                                     "nope").sign(claims(), jku=JKU), AUD)
    assert len(responses.calls) == 3


@responses.activate
def test_disallowed_jku_makes_no_network_call(attacker, remote_only):
    evil = "https://evil.example/jwks.json"
    responses.get(evil, json={"keys": [attacker.jwk]})
    with pytest.raises(AuthError) as info:
        remote_only.authenticate("Bearer " + attacker.sign(claims(), jku=evil), AUD)
    assert info.value.reason == "jku_not_allowed"
    assert len(responses.calls) == 0


@responses.activate
def test_no_jku_header_uses_configured_url(es384, remote_only):
    # CDS Hooks: without jku the key set is agreed out of band (our config).
    responses.get(JKU, json={"keys": [es384.jwk]})
    remote_only.authenticate("Bearer " + es384.sign(claims()), AUD)
    assert len(responses.calls) == 1


@responses.activate
def test_jwks_unavailable_and_failed_fetch_rate_limited(es384, remote_only, clock):
    responses.get(JKU, status=503)
    for _ in range(3):
        with pytest.raises(AuthError) as info:
            remote_only.authenticate("Bearer " + es384.sign(claims(), jku=JKU), AUD)
        assert info.value.reason == "jwks_unavailable"
    assert len(responses.calls) == 1


@responses.activate
def test_jwks_unavailable_says_when_the_key_set_is_fetched_again(es384, remote_only, clock):
    """The web layer turns it into Retry-After (a 503): the next fetch is at
    most jwks_refetch_min_interval_seconds (30) after the failed one."""
    responses.get(JKU, status=503)
    waits = []
    for step in (0, 12, 17.5):
        clock.advance(step)
        with pytest.raises(AuthError) as info:
            remote_only.authenticate("Bearer " + es384.sign(claims(), jku=JKU), AUD)
        waits.append(info.value.retry_after)
    assert waits == [30, 18, 1]
    # Other refusals carry none.
    with pytest.raises(AuthError) as info:
        remote_only.authenticate("Bearer x.y.z", AUD)
    assert info.value.retry_after is None


@responses.activate
def test_redirect_not_followed(es384, remote_only):
    responses.get(JKU, status=302, headers={"Location": "https://evil.example/jwks.json"})
    responses.get("https://evil.example/jwks.json", json={"keys": [es384.jwk]})
    with pytest.raises(AuthError) as info:
        remote_only.authenticate("Bearer " + es384.sign(claims(), jku=JKU), AUD)
    assert info.value.reason == "jwks_unavailable"
    assert [c.request.url for c in responses.calls] == [JKU]


@responses.activate
def test_stale_keys_used_when_refetch_fails(es384, remote_only, clock):
    responses.get(JKU, json={"keys": [es384.jwk]})
    remote_only.authenticate("Bearer " + es384.sign(claims(), jku=JKU), AUD)
    responses.replace(responses.GET, JKU, status=500)
    clock.advance(400)  # cache expired, refetch fails
    remote_only.authenticate("Bearer " + es384.sign(claims(exp=int((clock.t + timedelta(minutes=5)).timestamp()),
                                                        iat=int(clock.t.timestamp())), jku=JKU), AUD)
    assert len(responses.calls) == 2


@responses.activate
def test_fetched_private_key_is_not_used(es384, remote_only):
    leaked = dict(es384.jwk, d="AAAA")
    responses.get(JKU, json={"keys": [leaked]})
    with pytest.raises(AuthError) as info:
        remote_only.authenticate("Bearer " + es384.sign(claims(), jku=JKU), AUD)
    assert info.value.reason == "unknown_kid"


# --------------------------------------------------------------------------
# Trusted issuers file, sandbox data


def test_sandbox_jwks_file_parses_and_holds_the_sandbox_kid():
    from importlib import resources
    data = json.loads(resources.files("cds_service").joinpath("data", "sandbox_jwks.json").read_text())
    kids = {k["kid"] for k in data["keys"]}
    assert SANDBOX_KID in kids
    for k in data["keys"]:
        assert "d" not in k, "only the public key may be shipped"
        jwt.PyJWK(k)  # loads as a real key


def test_development_trusts_sandbox_production_does_not(tmp_path):
    dev = load_trusted_issuers(None, "development")
    assert SANDBOX_KID in dev[SANDBOX_ISSUER].keys
    assert SANDBOX_JKU in dev[SANDBOX_ISSUER].jku
    assert load_trusted_issuers(None, "production") == {}


def test_sandbox_shaped_token_accepted_in_development(store, clock):
    # Stand-in for the sandbox's key (its real private key is deliberately
    # not in this repository): same kid, issuer, jku and claims shape.
    key = Key(ec.generate_private_key(ec.SECP384R1()), "ES384", SANDBOX_KID)
    issuers = load_trusted_issuers(None, "development")
    auth = ClientAuthenticator(issuers, jti_store=store, now=clock)
    token = key.sign(claims(iss=SANDBOX_ISSUER), jku=SANDBOX_JKU)
    with pytest.raises(AuthError) as info:
        auth.authenticate("Bearer " + token, AUD)
    # Reaches signature verification against the shipped public key.
    assert info.value.reason == "bad_signature"


def test_operator_file_loads(tmp_path, es384, rs384):
    path = tmp_path / "issuers.json"
    path.write_text(json.dumps({
        ISS: {"jwks": {"keys": [es384.jwk]}, "jku": [JKU], "algorithms": ["ES384"]},
        "https://other-ehr.example": {"jku": ["https://other-ehr.example/jwks"]},
    }))
    loaded = load_trusted_issuers(str(path), "production")
    assert set(loaded) == {ISS, "https://other-ehr.example"}
    assert loaded[ISS].keys[es384.kid]["x"] == es384.jwk["x"]
    assert loaded[ISS].algorithms == {"ES384"}
    # An operator may name the sandbox in production explicitly, at their own risk.
    path.write_text(json.dumps({SANDBOX_ISSUER: {"jku": [SANDBOX_JKU]}}))
    assert SANDBOX_ISSUER in load_trusted_issuers(str(path), "production")


BAD_FILES = [
    ("not json", "{", "not valid JSON"),
    ("not an object", "[]", "must be a JSON object"),
    ("entry not object", json.dumps({ISS: "https://x"}), "must be an object"),
    ("neither jwks nor jku", json.dumps({ISS: {}}), "needs 'jwks'"),
    ("typo field", json.dumps({ISS: {"jwks_uri": "https://x"}}), "unknown field"),
    ("jku not a list", json.dumps({ISS: {"jku": JKU}}), "non-empty list"),
    ("jku http", json.dumps({ISS: {"jku": ["http://ehr.example.org/jwks"]}}), "must use https"),
    ("jwks not a set", json.dumps({ISS: {"jwks": [{"kty": "EC"}]}}), "JWK Set"),
    ("bad alg", json.dumps({ISS: {"jku": [JKU], "algorithms": ["HS256"]}}), "unsupported algorithm"),
    ("symmetric key", json.dumps({ISS: {"jwks": {"keys": [{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}]}}}),
     "private or symmetric"),
    ("empty jwks, no jku", json.dumps({ISS: {"jwks": {"keys": []}}}), "'jwks' holds no keys and there is no 'jku'"),
    ("empty jwks beside a good issuer", json.dumps({"https://other-ehr.example": {"jku": [JKU]},
                                                    ISS: {"jwks": {"keys": []}, "algorithms": ["ES384"]}}),
     f"issuer {ISS!r}: 'jwks' holds no keys"),
]


def test_empty_inline_jwks_is_fine_beside_a_jku(tmp_path):
    """Control: the keys are published at the jku; the empty inline set adds none."""
    path = tmp_path / "issuers.json"
    path.write_text(json.dumps({ISS: {"jwks": {"keys": []}, "jku": [JKU]}}))
    loaded = load_trusted_issuers(str(path), "production")[ISS]
    assert loaded.keys == {} and loaded.jku == {JKU}


@pytest.mark.parametrize("case, text, expected", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_bad_issuers_file_is_a_clear_error(case, text, expected, tmp_path):
    path = tmp_path / "issuers.json"
    path.write_text(text)
    with pytest.raises(SettingsError) as info:
        load_trusted_issuers(str(path), "production")
    assert expected in str(info.value)
    assert str(path) in str(info.value)  # says which file
    assert isinstance(info.value, ValueError)


def test_private_key_in_issuers_file_refused(tmp_path, es384):
    priv = json.loads(jwt.get_algorithm_by_name("ES384").to_jwk(es384.private))
    priv["kid"] = "k"
    path = tmp_path / "issuers.json"
    path.write_text(json.dumps({ISS: {"jwks": {"keys": [priv]}}}))
    with pytest.raises(SettingsError, match="PUBLIC key"):
        load_trusted_issuers(str(path), "production")


def test_missing_issuers_file(tmp_path):
    with pytest.raises(SettingsError, match="cannot read"):
        load_trusted_issuers(str(tmp_path / "nope.json"), "production")


def test_http_loopback_jku_only_in_development(tmp_path):
    path = tmp_path / "issuers.json"
    path.write_text(json.dumps({"http://localhost:8080": {"jku": ["http://localhost:8080/jwks"]}}))
    assert "http://localhost:8080" in load_trusted_issuers(str(path), "development")
    with pytest.raises(SettingsError):
        load_trusted_issuers(str(path), "production")


# --------------------------------------------------------------------------
# Helpers


@pytest.mark.parametrize("base, root, path, expected", [
    ("https://cds.example.org", "http://10.0.0.5:8000/", "/cds-services/x", "https://cds.example.org/cds-services/x"),
    ("https://cds.example.org/", "http://ignored/", "cds-services/x", "https://cds.example.org/cds-services/x"),
    ("https://example.org/osteo/", "", "/cds-services", "https://example.org/osteo/cds-services"),
    ("", "http://localhost:5000/", "/cds-services", "http://localhost:5000/cds-services"),
    ("  ", "http://localhost:5000/prefix/", "/cds-services/x/feedback", "http://localhost:5000/prefix/cds-services/x/feedback"),
])
def test_expected_audience(base, root, path, expected):
    assert expected_audience(base, root, path) == expected


@pytest.mark.parametrize("url, expected", [
    ("HTTPS://Ehr.Example.org/jwks", "https://ehr.example.org/jwks"),
    ("https://ehr.example.org:443/jwks", "https://ehr.example.org/jwks"),
    ("https://ehr.example.org:8443/jwks", "https://ehr.example.org:8443/jwks"),
    ("https://ehr.example.org", "https://ehr.example.org/"),
    ("https://u:p@ehr.example.org/jwks", None),
    ("https://ehr.example.org/jwks#x", None),
    ("ftp://ehr.example.org/jwks", None),
    (" https://ehr.example.org/jwks", None),
])
def test_normalize_url(url, expected):
    assert normalize_url(url) == expected


def test_auth_error_reasons_are_closed():
    with pytest.raises(ValueError):
        AuthError("made_up", "x")


def test_request_audience_reads_the_request_root_only_without_a_public_base_url():
    class NoRoot:
        @property
        def url_root(self):
            raise AssertionError("the request's root URL was read")

    class Root:
        url_root = "http://localhost:8080/"

    assert request_audience(" https://cds.example.org/ ", NoRoot(), "/cds-services/x") == "https://cds.example.org/cds-services/x"
    assert request_audience("", Root(), "/cds-services/x") == "http://localhost:8080/cds-services/x"


def test_request_audience_of_a_remembered_root_is_each_requests_own():
    """The root URL is remembered by scheme, host and root path: each request
    still gets what werkzeug builds for it."""
    from flask import Request
    from werkzeug.test import EnvironBuilder

    from cds_service.protocol import auth

    auth._URL_ROOTS.clear()
    bases = ["http://localhost/", "http://localhost:8080/", "https://ehr.example.org/", "https://ehr.example.org:443/",
             "http://[::1]:5000/", "http://xn--bcher-kva.example/", "http://localhost/prefix/", "http://localhost/a%20b/",
             "http://LOCALHOST/"]
    for _ in range(2):
        for base in bases:
            for host in (None, "other.example.org:81", "bücher.example"):
                environ = EnvironBuilder(path="/cds-services/x", base_url=base,
                                         headers={"Host": host} if host else None).get_environ()
                expected = expected_audience("", Request(environ).url_root, "/cds-services/x")
                assert request_audience("", Request(environ), "/cds-services/x") == expected
    assert 0 < len(auth._URL_ROOTS) <= 64


# --------------------------------------------------------------------------
# Key rotation and an unreachable key set (operator review 21)


@pytest.fixture
def default_remote(store, clock):
    """An issuer published at its jku only, with the service's default intervals."""
    cfg = {ISS: IssuerConfig(issuer=ISS, jku=frozenset({JKU}))}
    return ClientAuthenticator(cfg, jti_store=store, http_session=requests.Session(), now=clock)


def _fresh_claims(clock) -> dict:
    return claims(iat=int(clock.t.timestamp()), exp=int((clock.t + timedelta(minutes=5)).timestamp()))


FETCH_FAILURES = {
    "http 503": {"status": 503},
    "http 500": {"status": 500},
    "connection refused": {"body": requests.ConnectionError("refused")},
    "timeout": {"body": requests.ReadTimeout("slow")},
}


@pytest.mark.parametrize("failure", sorted(FETCH_FAILURES))
@responses.activate
def test_unknown_kid_while_the_key_set_cannot_be_fetched_is_jwks_unavailable(failure, es384, rs384,
                                                                              default_remote, clock):
    """The key set was fetched once (es384); the client rotates to rs384 while its
    JWKS host is down: the new key may well be there, so not a 401 unknown_kid."""
    responses.get(JKU, json={"keys": [es384.jwk]})
    default_remote.authenticate("Bearer " + es384.sign(_fresh_claims(clock), jku=JKU), AUD)
    responses.replace(responses.GET, JKU, **FETCH_FAILURES[failure])
    clock.advance(10)
    with pytest.raises(AuthError) as info:
        default_remote.authenticate("Bearer " + rs384.sign(_fresh_claims(clock), jku=JKU), AUD)
    assert info.value.reason == "jwks_unavailable"
    assert info.value.retry_after == 5
    assert "could not be fetched" in info.value.message and "rsa-1" in info.value.message
    # Within the interval: not fetched again, and still 503 with the time left.
    clock.advance(2)
    with pytest.raises(AuthError) as info:
        default_remote.authenticate("Bearer " + rs384.sign(_fresh_claims(clock), jku=JKU), AUD)
    assert (info.value.reason, info.value.retry_after) == ("jwks_unavailable", 3)
    assert len(responses.calls) == 2
    # Control: the cached key still works during the outage.
    ctx = default_remote.authenticate("Bearer " + es384.sign(_fresh_claims(clock), jku=JKU), AUD)
    assert ctx.kid == es384.kid
    # The host is back: the rotated key is fetched and accepted.
    responses.replace(responses.GET, JKU, json={"keys": [es384.jwk, rs384.jwk]})
    clock.advance(3)
    assert default_remote.authenticate("Bearer " + rs384.sign(_fresh_claims(clock), jku=JKU), AUD).kid == rs384.kid
    assert len(responses.calls) == 3


@responses.activate
def test_forged_tokens_stay_401_while_the_key_set_is_down(es384, attacker, default_remote, clock):
    """What is found wrong without the remote set is still a 401 when it is down."""
    responses.get(JKU, json={"keys": [es384.jwk]})
    default_remote.authenticate("Bearer " + es384.sign(_fresh_claims(clock), jku=JKU), AUD)
    responses.replace(responses.GET, JKU, status=503)
    clock.advance(10)
    forged_known_kid = Key(attacker.private, "ES384", es384.kid).sign(_fresh_claims(clock), jku=JKU)
    unsigned = _b64(b'{"alg":"none","kid":"x"}') + "." + _b64(json.dumps(_fresh_claims(clock)).encode()) + "."
    other_jku = attacker.sign(_fresh_claims(clock), jku="https://evil.example/jwks.json")
    for token, reason in ((forged_known_kid, "bad_signature"), (unsigned, "unsupported_alg"),
                          (other_jku, "jku_not_allowed")):
        with pytest.raises(AuthError) as info:
            default_remote.authenticate("Bearer " + token, AUD)
        assert info.value.reason == reason
    assert len(responses.calls) == 1


@responses.activate
def test_rotated_kid_is_fetched_within_seconds_of_the_last_fetch(es384, rs384, default_remote, clock):
    """A kid published right after a fetch is refused for at most the refetch
    interval (5 s), not 30 s."""
    responses.get(JKU, json={"keys": [es384.jwk]})
    default_remote.authenticate("Bearer " + es384.sign(_fresh_claims(clock), jku=JKU), AUD)
    responses.replace(responses.GET, JKU, json={"keys": [es384.jwk, rs384.jwk]})
    clock.advance(1)
    with pytest.raises(AuthError) as info:  # fetched 1 s ago without it: the token's fault for now
        default_remote.authenticate("Bearer " + rs384.sign(_fresh_claims(clock), jku=JKU), AUD)
    assert info.value.reason == "unknown_kid"
    clock.advance(4)
    assert default_remote.authenticate("Bearer " + rs384.sign(_fresh_claims(clock), jku=JKU), AUD).kid == rs384.kid
    assert len(responses.calls) == 2


@responses.activate
def test_a_flood_of_random_kids_fetches_at_most_once_per_interval(es384, default_remote, clock):
    """Four tokens a second with random kids for 60 s: one fetch per 5 s (13),
    not one per token (240)."""
    responses.get(JKU, json={"keys": [es384.jwk]})
    forger = ec.generate_private_key(ec.SECP384R1())
    refused = 0
    for step in range(240):
        clock.t = NOW + timedelta(seconds=step / 4)
        token = Key(forger, "ES384", f"random-{uuid.uuid4()}").sign(_fresh_claims(clock), jku=JKU)
        with pytest.raises(AuthError) as info:
            default_remote.authenticate("Bearer " + token, AUD)
        refused += info.value.reason == "unknown_kid"
    assert refused == 240
    assert len(responses.calls) == 60 // 5


def _jwks_server(keys: list, delay: float):
    """A JWKS host on loopback that answers `keys` (as they are when asked) after
    `delay` seconds; `hits` counts its GETs."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hits = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            hits.append(self.path)
            time.sleep(delay)
            body = json.dumps({"keys": keys}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/jwks.json", hits


def test_concurrent_unknown_kids_share_one_fetch_and_known_keys_never_wait(es384, rs384, store, clock):
    """Over real HTTP on loopback, with a JWKS host that takes 1.5 s: 20 requests
    with unknown kids at once cause one fetch, the rotated key among them is
    accepted, and a token with a cached kid is answered meanwhile without waiting."""
    import threading
    import time

    published = [es384.jwk]
    server, url, hits = _jwks_server(published, delay=1.5)
    try:
        auth = ClientAuthenticator({ISS: IssuerConfig(issuer=ISS, jku=frozenset({url}))}, jti_store=store,
                                   http_session=requests.Session(), now=clock)
        auth.authenticate("Bearer " + es384.sign(_fresh_claims(clock)), AUD)
        assert len(hits) == 1
        published.append(rs384.jwk)  # the client rotates
        clock.advance(10)
        forger = ec.generate_private_key(ec.SECP384R1())
        tokens = [Key(forger, "ES384", f"random-{i}").sign(_fresh_claims(clock)) for i in range(19)]
        tokens.append(rs384.sign(_fresh_claims(clock)))
        results: list = [None] * len(tokens)

        def call(i):
            try:
                results[i] = auth.authenticate("Bearer " + tokens[i], AUD).kid
            except AuthError as exc:
                results[i] = exc.reason

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(tokens))]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 5
        while len(hits) < 2 and time.monotonic() < deadline:  # until the fetch is in flight
            time.sleep(0.01)
        started = time.perf_counter()
        assert auth.authenticate("Bearer " + es384.sign(_fresh_claims(clock)), AUD).kid == es384.kid
        known_wait = time.perf_counter() - started
        for t in threads:
            t.join(10)
        assert results == ["unknown_kid"] * 19 + [rs384.kid]
        assert len(hits) == 2
        assert known_wait < 0.6, f"a cached kid waited {known_wait:.2f} s behind the fetch"
    finally:
        server.shutdown()
        server.server_close()
