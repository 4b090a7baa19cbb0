"""Authentication of CDS Clients (CDS Hooks 2.0, "Trusting CDS Clients").

Every call from a CDS Client (EHR) carries `Authorization: Bearer <JWT>`,
signed with the client's private key. This module decides whether such a
token comes from a client this service trusts. It is framework-free: the web
layer passes in the header and the URL that was called and maps AuthError to
an HTTP 401.

What is checked, in this order (cheap and network-free checks first, so a
forged token never makes the service fetch anything):

1. Bearer scheme, size, structure of the JWT.
2. Header: `alg` is an asymmetric algorithm we accept (ES384, RS384; ES256
   and RS256 only when legacy algorithms are allowed). `none` and HMAC are
   refused before any key is looked at, so the classic "HS256 signed with the
   public key" confusion cannot happen. `kid` is required, `typ` must be
   `JWT` when present, `crit` is refused (we implement no extensions).
3. `iss` names a configured trusted issuer.
4. The key: by `kid` from that issuer's inline JWKS, or from the JWKS at the
   header's `jku` only when that URL is on the issuer's allowlist. A `jku`
   that is not allowlisted is refused outright, without a network call.
5. Signature (PyJWT), then `aud` (exactly the URL called), `exp`, `iat`,
   `nbf`, and finally `jti` (never accepted twice, via a caller-supplied
   store so it holds across replicas).

Tokens never appear in exceptions or logs: they are bearer credentials.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from werkzeug.sansio.utils import get_current_url

import jwt

if TYPE_CHECKING:
    import requests  # imported where a key set is fetched (see cds_service.app.LazySession)

from cds_service.config import SettingsError
from cds_service.fhir.allowlist import DEFAULT_PORTS

log = logging.getLogger(__name__)

SANDBOX_ISSUER = "https://sandbox.cds-hooks.org"
SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"

# CDS Hooks 2.0 asks services to support ES384 and RS384.
STANDARD_ALGORITHMS = frozenset({"ES384", "RS384"})
# Older clients sign with these; accepted only when explicitly allowed.
LEGACY_ALGORITHMS = frozenset({"ES256", "RS256"})
KNOWN_ALGORITHMS = STANDARD_ALGORITHMS | LEGACY_ALGORITHMS

# The curve each EC algorithm is defined for (RFC 7518 3.4); a P-256 key must
# not verify an "ES384" token.
_EC_CURVES = {"ES256": "P-256", "ES384": "P-384"}
_MIN_RSA_BITS = 2048

# JWK members that only a private or symmetric key has; a trust file holding
# them is a leaked secret, and we refuse to load it.
_PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})

# Bounds on attacker-controlled input (a real CDS Hooks JWT is < 2 KB; a
# JWKS a few KB).
MAX_TOKEN_BYTES = 16 * 1024
MAX_JWKS_BYTES = 256 * 1024
_MAX_ECHO = 200  # longest claim value repeated back in an error message
# The replay store's columns (store.used_jtis): issuer and jti up to 255
# characters, and text a database can hold: no NUL (nor other control
# characters), no unpaired surrogate.
MAX_JTI_LENGTH = 255
_UNSTORABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


class AuthError(Exception):
    """The CDS Client could not be authenticated.

    `reason` is a short machine code (stable, fit for metrics and for the
    401 body); `message` is human text for the integration engineer. Neither
    ever contains the token.
    """

    REASONS = frozenset({
        "missing_token", "malformed_token", "unsupported_alg", "unknown_issuer",
        "unknown_kid", "jku_not_allowed", "bad_signature", "wrong_audience",
        "expired", "not_yet_valid", "iat_in_future", "lifetime_too_long", "replayed_jti",
        "missing_claim", "jwks_unavailable",
    })

    def __init__(self, reason: str, message: str, *, retry_after: int | None = None):
        if reason not in self.REASONS:  # keeps the set of codes documented and closed
            raise ValueError(f"unknown AuthError reason {reason!r}")
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        # jwks_unavailable: seconds until the key set may be fetched again. The
        # token was not found wrong, it could not be checked (a 503, not a 401).
        self.retry_after = retry_after


@dataclasses.dataclass(frozen=True)
class IssuerConfig:
    """How to find the public keys of one trusted CDS Client."""

    issuer: str
    # Inline public keys by kid (JWK dicts as given).
    keys: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    # Normalised JWKS URLs a token's `jku` may name.
    jku: frozenset[str] = frozenset()
    # Algorithms this issuer may use; None = every algorithm the service accepts.
    algorithms: frozenset[str] | None = None


@dataclasses.dataclass(frozen=True)
class AuthContext:
    """Who called, once authenticated."""

    issuer: str
    subject: str | None
    tenant: str | None
    jti: str
    kid: str
    alg: str


JtiStore = Callable[[str, str, datetime], bool]


# --------------------------------------------------------------------------
# Helpers


def _echo(value: Any) -> str:
    """repr() of an untrusted value, shortened, for error messages."""
    text = repr(value)
    return text if len(text) <= _MAX_ECHO else text[:_MAX_ECHO] + "...'"


def normalize_url(url: str) -> str | None:
    """Canonical form of an http(s) URL for allowlist comparison, or None
    if it is not one we would ever fetch.

    Scheme and host are case-insensitive and a default port is the same as
    none; the path, query and everything else must match exactly. URLs with
    credentials or fragments are refused rather than normalised, so a
    lookalike can never be made to compare equal to an allowlisted URL.
    """
    if not isinstance(url, str) or not url or url != url.strip():
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https"} or not parts.hostname:
        return None
    if parts.username is not None or parts.password is not None or parts.fragment or "#" in url:
        return None
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if port is not None and port != DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    return urlunsplit((scheme, host, parts.path or "/", parts.query, ""))


def expected_audience(public_base_url: str, request_url_root: str, path: str) -> str:
    """The `aud` a client must put in its JWT for a call to `path`.

    CDS Hooks makes `aud` the URL of the endpoint called. Behind a proxy the
    service cannot see that URL, so CDS_PUBLIC_BASE_URL wins when set;
    otherwise the request's own root (e.g. Flask's `request.url_root`) is used.
    """
    base = (public_base_url or "").strip() or (request_url_root or "").strip()
    if not base:
        raise ValueError("no base URL to build the expected audience from")
    path = (path or "").strip()
    if not path.strip("/"):
        return base.rstrip("/")
    return base.rstrip("/") + "/" + path.lstrip("/")


def request_audience(public_base_url: str, request: Any, path: str) -> str:
    """expected_audience() for a Flask request: its root URL is read only without a
    public base URL (werkzeug builds it anew for each request, and production sets one)."""
    root = "" if (public_base_url or "").strip() else _url_root(request)
    return expected_audience(public_base_url, root, path)


# A Host werkzeug refuses but that is a plain name: werkzeug's own pattern plus "_", which
# docker-compose service names have ("cds_service:8000", what nginx passes on by default).
_UNDERSCORE_HOST = re.compile(r"([a-z0-9._-]+)(?::([1-9][0-9]{0,4}))?", re.ASCII | re.IGNORECASE)


def request_host(request: Any) -> str:
    """The request's host[:port] for its root URL: werkzeug's `request.host`, or, where
    werkzeug read the Host header as "" only for an underscore in the name, that header
    (a default port dropped, as werkzeug does). "" for anything else: no usable host."""
    host = request.host
    if host:
        return host
    raw = request.headers.get("Host")
    found = _UNDERSCORE_HOST.fullmatch(raw) if isinstance(raw, str) else None
    if found is None or int(found.group(2) or 1) > 65535:
        return ""
    default = DEFAULT_PORTS.get(request.scheme)
    return raw.removesuffix(f":{default}") if default else raw


_URL_ROOTS: dict[tuple[Any, ...], str] = {}


def _url_root(request: Any) -> str:
    """request.url_root, remembered by what werkzeug builds it from (its
    root_url: get_current_url(scheme, host, root_path), about 17 us a request).
    The Host header is the client's: the store is emptied when it fills.
    The host is request_host's (werkzeug's, or a name with "_" it refused)."""
    try:
        key = (request.scheme, request_host(request), request.root_path)
    except AttributeError:  # not a werkzeug request
        return request.url_root
    root = _URL_ROOTS.get(key)
    if root is None:
        if len(_URL_ROOTS) >= 64:
            _URL_ROOTS.clear()
        root = _URL_ROOTS[key] = request.url_root if key[1] == request.host else get_current_url(*key)
    return root


def _check_public_jwk(jwk: Any, where: str) -> dict[str, Any]:
    """Validate one JWK from a trust file or the sandbox data; return it."""
    if not isinstance(jwk, dict):
        raise SettingsError(f"{where}: each key must be a JSON object")
    leaked = sorted(_PRIVATE_JWK_MEMBERS & jwk.keys())
    if leaked:
        raise SettingsError(
            f"{where}: key holds private or symmetric members {leaked}; "
            "put only the client's PUBLIC key here")
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid:
        raise SettingsError(f"{where}: every key needs a non-empty string 'kid'")
    if jwk.get("kty") not in {"EC", "RSA"}:
        raise SettingsError(f"{where}: key {kid!r} has kty {jwk.get('kty')!r}; only EC and RSA are accepted")
    if "alg" in jwk and jwk["alg"] not in KNOWN_ALGORITHMS:
        raise SettingsError(f"{where}: key {kid!r} has unsupported alg {jwk['alg']!r}")
    try:
        parsed = jwt.PyJWK(jwk)
    except (jwt.exceptions.PyJWKError, jwt.exceptions.InvalidKeyError, ValueError, TypeError) as exc:
        raise SettingsError(f"{where}: key {kid!r} is not a usable public JWK ({exc})") from None
    if jwk["kty"] == "RSA" and parsed.key.key_size < _MIN_RSA_BITS:
        raise SettingsError(f"{where}: RSA key {kid!r} is shorter than {_MIN_RSA_BITS} bits")
    if jwk["kty"] == "EC" and jwk.get("crv") not in _EC_CURVES.values():
        raise SettingsError(f"{where}: EC key {kid!r} must be on P-256 or P-384")
    return dict(jwk)


def _parse_jwks(jwks: Any, where: str) -> dict[str, dict[str, Any]]:
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise SettingsError(f"{where}: 'jwks' must be a JWK Set: {{\"keys\": [...]}}")
    keys: dict[str, dict[str, Any]] = {}
    for jwk in jwks["keys"]:
        checked = _check_public_jwk(jwk, where)
        if checked["kid"] in keys:
            raise SettingsError(f"{where}: kid {checked['kid']!r} appears twice")
        keys[checked["kid"]] = checked
    return keys


def _jku_allowed_for_profile(url: str, profile: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    # A local EHR simulator may serve its JWKS over plain http; only on
    # loopback and only while developing.
    return profile == "development" and parts.hostname in {"localhost", "127.0.0.1", "::1"}


def _parse_issuer(issuer: Any, entry: Any, profile: str, where: str) -> IssuerConfig:
    if not isinstance(issuer, str) or not issuer.strip():
        raise SettingsError(f"{where}: issuer names must be non-empty strings")
    if len(issuer) > MAX_JTI_LENGTH or _UNSTORABLE.search(issuer):
        raise SettingsError(f"{where}: issuer names must be at most {MAX_JTI_LENGTH} characters "
                            "without control characters")
    where = f"{where}: issuer {issuer!r}"
    if not isinstance(entry, dict):
        raise SettingsError(f"{where}: value must be an object with 'jwks' and/or 'jku'")
    unknown = sorted(set(entry) - {"jwks", "jku", "algorithms"})
    if unknown:  # catches typos such as "jwk" or "jwks_uri" that would silently trust nothing
        raise SettingsError(f"{where}: unknown field(s) {unknown}; allowed: jwks, jku, algorithms")
    if "jwks" not in entry and "jku" not in entry:
        raise SettingsError(f"{where}: needs 'jwks' (inline public keys) or 'jku' (allowed JWKS URLs)")
    keys = _parse_jwks(entry["jwks"], where) if "jwks" in entry else {}
    if not keys and "jku" not in entry:
        # As closed as no entry, but it looks like trust: every token of this
        # issuer would be refused (unknown_kid) without a word at start-up.
        raise SettingsError(f"{where}: 'jwks' holds no keys and there is no 'jku', so no token of this issuer "
                            "could ever be verified; add its public keys to 'jwks' or its JWKS URL to 'jku'")
    jku: set[str] = set()
    if "jku" in entry:
        urls = entry["jku"]
        if isinstance(urls, str) or not isinstance(urls, list) or not urls:
            raise SettingsError(f"{where}: 'jku' must be a non-empty list of URLs")
        for url in urls:
            norm = normalize_url(url)
            if norm is None:
                raise SettingsError(f"{where}: jku {url!r} is not a plain http(s) URL")
            if not _jku_allowed_for_profile(norm, profile):
                raise SettingsError(f"{where}: jku {url!r} must use https")
            jku.add(norm)
    algorithms = None
    if "algorithms" in entry:
        algs = entry["algorithms"]
        if isinstance(algs, str) or not isinstance(algs, list) or not algs:
            raise SettingsError(f"{where}: 'algorithms' must be a non-empty list")
        bad = sorted(str(a) for a in algs if a not in KNOWN_ALGORITHMS)
        if bad:
            raise SettingsError(f"{where}: unsupported algorithm(s) {bad}; "
                                f"allowed: {sorted(KNOWN_ALGORITHMS)}")
        algorithms = frozenset(algs)
    return IssuerConfig(issuer=issuer, keys=keys, jku=frozenset(jku), algorithms=algorithms)


def sandbox_issuer() -> IssuerConfig:
    """The public CDS Hooks sandbox, from its public JWKS shipped as data."""
    text = resources.files("cds_service").joinpath("data", "sandbox_jwks.json").read_text("utf-8")
    keys = _parse_jwks(json.loads(text), "cds_service/data/sandbox_jwks.json")
    return IssuerConfig(issuer=SANDBOX_ISSUER, keys=keys, jku=frozenset({SANDBOX_JKU}),
                        algorithms=frozenset({"ES384"}))


def load_trusted_issuers(path: str | None, profile: str) -> dict[str, IssuerConfig]:
    """Read the trusted-issuers file (CDS_TRUSTED_ISSUERS).

    Format: a JSON object mapping each issuer (the exact `iss` its JWTs
    carry) to {"jwks": {"keys": [...]}} and/or {"jku": ["https://..."]},
    optionally with "algorithms": ["ES384", ...]. The development profile
    adds the public CDS Hooks sandbox unless the file names it itself.
    Raises SettingsError (a ValueError) describing what is wrong.
    """
    if profile not in {"production", "development"}:
        raise SettingsError(f"unknown profile {profile!r}")
    issuers: dict[str, IssuerConfig] = {}
    if path:
        where = f"CDS_TRUSTED_ISSUERS ({path})"
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except OSError as exc:
            raise SettingsError(f"{where}: cannot read file: {exc.strerror or exc}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SettingsError(f"{where}: not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise SettingsError(f"{where}: must be a JSON object of issuer -> settings")
        for issuer, entry in data.items():
            issuers[issuer] = _parse_issuer(issuer, entry, profile, where)
    if profile == "development" and SANDBOX_ISSUER not in issuers:
        issuers[SANDBOX_ISSUER] = sandbox_issuer()
    return issuers


# --------------------------------------------------------------------------
# The authenticator


@dataclasses.dataclass
class _CachedJwks:
    keys: dict[str, dict[str, Any]]
    fetched_at: datetime | None  # the last successful fetch; None: never fetched successfully
    last_attempt: datetime
    failed: bool = False  # the last attempt failed: `keys` (if any) are an older fetch's
    attempts: int = 1  # fetches tried so far; a request that waited sees it grow


# Least time between two fetches of one JWKS URL on behalf of unknown `kid`s (and
# after a failed fetch). A client that rotates its key is refused (401 unknown_kid)
# at most this long after the previous fetch; a flood of tokens with random kids
# makes at most one fetch per URL per interval (per replica), so 5 s is 12 a minute
# at worst, the load of an ordinary JWKS poller. Above the 3 s fetch timeout, so
# at most one fetch per URL is in flight at a time, and a failed one is retried
# at this pace too (the 503's Retry-After).
JWKS_REFETCH_MIN_INTERVAL_SECONDS = 5.0


class ClientAuthenticator:
    """Verifies CDS Client JWTs against a set of trusted issuers.

    Thread-safe: the JWKS cache is guarded, and each URL is fetched by one
    thread at a time so a burst of requests with a new kid causes one fetch
    (the others wait for it and use its answer). A request whose kid is in the
    cached set never waits for a fetch.
    """

    def __init__(
        self,
        issuers: Mapping[str, IssuerConfig],
        *,
        jti_store: JtiStore,
        http_session: requests.Session | None = None,
        allow_legacy_algs: bool = False,
        clock_skew_seconds: float = 60,
        max_lifetime_seconds: float = 3600,
        jwks_cache_seconds: float = 300,
        jwks_refetch_min_interval_seconds: float = JWKS_REFETCH_MIN_INTERVAL_SECONDS,
        fetch_timeout: float = 3.0,
        now: Callable[[], datetime] | None = None,
    ):
        self._issuers = dict(issuers)
        self._jti_store = jti_store
        self._session = http_session
        self._algorithms = STANDARD_ALGORITHMS | (LEGACY_ALGORITHMS if allow_legacy_algs else frozenset())
        self._skew = timedelta(seconds=clock_skew_seconds)
        self._max_lifetime = timedelta(seconds=max_lifetime_seconds)
        self._cache_ttl = timedelta(seconds=jwks_cache_seconds)
        self._refetch_interval = timedelta(seconds=jwks_refetch_min_interval_seconds)
        self._fetch_timeout = fetch_timeout
        self._now = now or (lambda: datetime.now(timezone.utc))
        self._cache: dict[str, _CachedJwks] = {}
        self._cache_lock = threading.Lock()
        self._fetch_locks: dict[str, threading.Lock] = {}

    # -- public ------------------------------------------------------------

    def authenticate(self, authorization_header: str | None, audience: str) -> AuthContext:
        """Return who called, or raise AuthError."""
        try:
            return self._authenticate(authorization_header, audience)
        except AuthError as exc:
            # Reason and message only: they never contain the token.
            log.info("CDS client refused: %s (%s)", exc.reason, exc.message)
            raise

    # -- steps -------------------------------------------------------------

    def _authenticate(self, authorization_header: str | None, audience: str) -> AuthContext:
        token = self._bearer_token(authorization_header)
        header = self._header(token)
        alg, kid = header["alg"], header["kid"]

        unverified = self._unverified_claims(token)
        iss = unverified.get("iss")
        if iss is None:
            raise AuthError("missing_claim", "the JWT has no 'iss' claim")
        if not isinstance(iss, str) or iss not in self._issuers:
            raise AuthError("unknown_issuer", f"issuer {_echo(iss)} is not trusted by this service")
        issuer = self._issuers[iss]
        if issuer.algorithms is not None and alg not in issuer.algorithms:
            raise AuthError("unsupported_alg", f"issuer {iss!r} is not configured to sign with {alg}")

        jwk = self._find_key(issuer, kid, header.get("jku"))
        key = self._verification_key(jwk, alg, kid)

        try:
            # Claims are checked below with our own clock and precise reasons;
            # PyJWT checks the signature (and nothing it would reject first).
            claims = jwt.decode(
                token, key=key, algorithms=[alg],
                options={"verify_signature": True, "verify_exp": False, "verify_nbf": False,
                         "verify_iat": False, "verify_aud": False, "verify_iss": False,
                         "verify_sub": False, "verify_jti": False, "require": []},
            )
        except jwt.exceptions.InvalidSignatureError:
            raise AuthError("bad_signature", f"signature does not verify with key {kid!r} of {iss!r}") from None
        except jwt.exceptions.InvalidTokenError as exc:
            raise AuthError("malformed_token", f"the JWT could not be decoded ({type(exc).__name__})") from None

        return self._check_claims(claims, audience, kid, alg)

    @staticmethod
    def _bearer_token(authorization_header: str | None) -> str:
        if authorization_header is None or not authorization_header.strip():
            raise AuthError("missing_token", "an 'Authorization: Bearer <JWT>' header is required")
        scheme, _, token = authorization_header.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise AuthError("missing_token", "the Authorization header must use the Bearer scheme")
        token = token.strip()
        if not token:
            raise AuthError("missing_token", "the Bearer token is empty")
        if len(token) > MAX_TOKEN_BYTES:
            raise AuthError("malformed_token", f"the JWT is longer than {MAX_TOKEN_BYTES} bytes")
        if token.count(".") != 2:
            raise AuthError("malformed_token", "the Bearer token is not a JWS compact JWT (header.payload.signature)")
        return token

    def _header(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.exceptions.InvalidTokenError:
            raise AuthError("malformed_token", "the JWT header could not be decoded") from None
        alg = header.get("alg")
        if not isinstance(alg, str):
            raise AuthError("malformed_token", "the JWT header has no 'alg'")
        # Refused by name before any key is involved: `none` carries no
        # signature, and HMAC would let a public key act as a shared secret.
        if alg.lower() == "none" or alg.upper().startswith("HS"):
            raise AuthError("unsupported_alg", f"alg {_echo(alg)} is never accepted (CDS Hooks forbids none and symmetric algorithms)")
        if alg not in self._algorithms:
            raise AuthError("unsupported_alg", f"alg {_echo(alg)} is not accepted; use one of {sorted(self._algorithms)}")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
            raise AuthError("malformed_token", f"the JWT header typ is {_echo(typ)}, expected 'JWT'")
        if "crit" in header:
            raise AuthError("malformed_token", "the JWT header lists critical extensions this service does not implement")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("missing_claim", "the JWT header has no 'kid' (CDS Hooks requires it)")
        jku = header.get("jku")
        if jku is not None and not isinstance(jku, str):
            raise AuthError("malformed_token", "the JWT header 'jku' is not a string")
        return header

    @staticmethod
    def _unverified_claims(token: str) -> dict[str, Any]:
        # Read only to pick the issuer; nothing here is trusted until the
        # signature has been verified with that issuer's key.
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.exceptions.InvalidTokenError:
            raise AuthError("malformed_token", "the JWT payload could not be decoded") from None
        if not isinstance(claims, dict):
            raise AuthError("malformed_token", "the JWT payload is not a JSON object")
        return claims

    def _find_key(self, issuer: IssuerConfig, kid: str, jku: str | None) -> dict[str, Any]:
        if jku is not None:
            norm = normalize_url(jku)
            if norm is None or norm not in issuer.jku:
                # Checked before the inline keys too: a token that points at
                # an unlisted key URL is refused, never fetched.
                raise AuthError("jku_not_allowed", f"jku {_echo(jku)} is not on the allowlist of issuer {issuer.issuer!r}")
            urls = [norm]
        else:
            # No jku: the spec says the key set is agreed out of band, which is
            # the inline keys and the configured URLs.
            urls = sorted(issuer.jku)
        if kid in issuer.keys:
            return dict(issuer.keys[kid])
        if not urls:
            raise AuthError("unknown_kid", f"issuer {issuer.issuer!r} has no key with kid {_echo(kid)}")
        waits = []
        for url in urls:
            try:
                jwk = self._key_from_url(url, kid)
            except AuthError as exc:
                if exc.reason != "jwks_unavailable":
                    raise
                waits.append(exc.retry_after or 1)
                continue
            if jwk is not None:
                return jwk
        if waits:
            # The key may be in a set that could not be read: the token is not
            # found wrong, only not checked (503, not 401).
            what = ("the JWKS" if len(waits) == len(urls) else "one of the JWKS") + f" of issuer {issuer.issuer!r}"
            raise AuthError("jwks_unavailable", f"{what} could not be fetched to look up kid {_echo(kid)}",
                            retry_after=min(waits))
        raise AuthError("unknown_kid", f"issuer {issuer.issuer!r} has no key with kid {_echo(kid)}")

    def _verification_key(self, jwk: Mapping[str, Any], alg: str, kid: str) -> Any:
        if any(m in jwk for m in _PRIVATE_JWK_MEMBERS):
            # A JWKS endpoint that publishes a private or symmetric key is
            # broken; refuse to use it rather than verify with it.
            raise AuthError("unknown_kid", f"key {kid!r} is not a public signing key")
        if jwk.get("use") not in (None, "sig") or (
                "key_ops" in jwk and "verify" not in (jwk.get("key_ops") or [])):
            raise AuthError("unknown_kid", f"key {kid!r} is not meant for signatures")
        if "alg" in jwk and jwk["alg"] != alg:
            raise AuthError("unsupported_alg", f"key {kid!r} is for {jwk['alg']}, the JWT says {alg}")
        expected_kty = "EC" if alg.startswith("ES") else "RSA"
        if jwk.get("kty") != expected_kty:
            raise AuthError("unsupported_alg", f"key {kid!r} is a {jwk.get('kty')} key, {alg} needs {expected_kty}")
        if expected_kty == "EC" and jwk.get("crv") != _EC_CURVES[alg]:
            raise AuthError("unsupported_alg", f"key {kid!r} is on {jwk.get('crv')}, {alg} needs {_EC_CURVES[alg]}")
        try:
            parsed = jwt.PyJWK(dict(jwk), algorithm=alg)
        except (jwt.exceptions.PyJWKError, jwt.exceptions.InvalidKeyError, ValueError, TypeError):
            raise AuthError("unknown_kid", f"key {kid!r} could not be loaded") from None
        if expected_kty == "RSA" and parsed.key.key_size < _MIN_RSA_BITS:
            raise AuthError("unsupported_alg", f"RSA key {kid!r} is shorter than {_MIN_RSA_BITS} bits")
        return parsed.key

    def _check_claims(self, claims: dict[str, Any], audience: str, kid: str, alg: str) -> AuthContext:
        now = self._now()
        iss = claims["iss"]

        aud = claims.get("aud")
        if aud is None:
            raise AuthError("missing_claim", "the JWT has no 'aud' claim")
        auds = [aud] if isinstance(aud, str) else aud
        if not isinstance(auds, list) or not all(isinstance(a, str) for a in auds):
            raise AuthError("malformed_token", "'aud' must be a string or a list of strings")
        if audience not in auds:
            raise AuthError("wrong_audience",
                            f"aud {_echo(aud)} does not name this endpoint; expected {audience!r} "
                            "(set CDS_PUBLIC_BASE_URL if the service is behind a proxy)")

        exp = self._numeric_date(claims, "exp")
        iat = self._numeric_date(claims, "iat")
        if now > exp + self._skew:
            raise AuthError("expired", f"the JWT expired at {exp.isoformat()}")
        if iat > now + self._skew:
            raise AuthError("iat_in_future", f"the JWT was issued in the future ({iat.isoformat()}); check the client's clock")
        # Short-lived tokens only: with exp within the lifetime of iat (and exp
        # not past), iat cannot lie further back than the lifetime either.
        if exp - iat > self._max_lifetime:
            raise AuthError("lifetime_too_long",
                            f"the JWT is valid for {int((exp - iat).total_seconds())} s (iat to exp); at most "
                            f"{int(self._max_lifetime.total_seconds())} s is accepted (CDS_JWT_MAX_LIFETIME_SECONDS)")
        if "nbf" in claims:
            nbf = self._numeric_date(claims, "nbf")
            if nbf > now + self._skew:
                raise AuthError("not_yet_valid", f"the JWT is not valid before {nbf.isoformat()}")

        jti = claims.get("jti")
        if jti is None or jti == "":
            raise AuthError("missing_claim", "the JWT has no 'jti' claim (required against replay)")
        if not isinstance(jti, str) or len(jti) > MAX_JTI_LENGTH or _UNSTORABLE.search(jti):
            # Refused here rather than by the replay store, which could not hold it.
            raise AuthError("malformed_token", f"'jti' must be a string of at most {MAX_JTI_LENGTH} characters "
                                               "without control characters")
        subject = self._optional_string(claims, "sub")
        tenant = self._optional_string(claims, "tenant")

        # Last, so a token refused for any other reason does not use up its jti.
        # Kept until it could no longer pass the exp check anyway.
        if not self._jti_store(iss, jti, exp + self._skew):
            raise AuthError("replayed_jti", f"jti {_echo(jti)} from {iss!r} was already used")

        return AuthContext(issuer=iss, subject=subject, tenant=tenant, jti=jti, kid=kid, alg=alg)

    @staticmethod
    def _numeric_date(claims: Mapping[str, Any], name: str) -> datetime:
        value = claims.get(name)
        if value is None:
            raise AuthError("missing_claim", f"the JWT has no '{name}' claim")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise AuthError("malformed_token", f"'{name}' must be a number of seconds since the epoch")
        try:
            return datetime.fromtimestamp(value, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise AuthError("malformed_token", f"'{name}' is out of range") from None

    @staticmethod
    def _optional_string(claims: Mapping[str, Any], name: str) -> str | None:
        value = claims.get(name)
        if value is not None and not isinstance(value, str):
            raise AuthError("malformed_token", f"'{name}' must be a string")
        return value

    # -- JWKS fetching -------------------------------------------------------

    def _key_from_url(self, url: str, kid: str) -> dict[str, Any] | None:
        """The JWK with `kid` from the (cached) JWKS at an allowlisted URL; None
        when a set fetched just now has no such key. AuthError jwks_unavailable
        when the kid is not in the cache and the set could not be fetched: the
        key may be there, unreachable.

        Fetches when nothing fresh is cached, and refetches on an unknown kid
        (the client may have rotated its key), but never more often than the
        minimum interval per URL, so tokens with random kids cannot turn the
        service into a request amplifier against the client's JWKS host.
        Requests that arrive during a fetch wait for it and share its answer,
        except those whose kid is cached: they never wait.
        """
        with self._cache_lock:
            lock = self._fetch_locks.setdefault(url, threading.Lock())
            entry = self._cache.get(url)
        now = self._now()
        if entry is not None and kid in entry.keys and self._fresh(entry, now):
            return entry.keys[kid]
        seen = entry.attempts if entry is not None else 0
        if not lock.acquire(blocking=entry is None or kid not in entry.keys):
            # A stale set is being fetched again: the key it has still serves meanwhile.
            return entry.keys[kid]
        try:
            now = self._now()
            with self._cache_lock:
                entry = self._cache.get(url)
            fetched_meanwhile = entry is not None and entry.attempts > seen
            if entry is None or (not fetched_meanwhile and (kid not in entry.keys or not self._fresh(entry, now))
                                 and now - entry.last_attempt >= self._refetch_interval):
                entry = self._fetch(url, entry, now)
        finally:
            lock.release()
        if kid in entry.keys:
            # Also a stale set's key when a refetch failed or was rate limited:
            # a JWKS host outage should not lock out a known key.
            return entry.keys[kid]
        if entry.failed:
            wait = self._refetch_interval - (now - entry.last_attempt)
            raise AuthError("jwks_unavailable", f"the JWKS at {url} could not be fetched",
                            retry_after=max(1, math.ceil(wait.total_seconds())))
        return None

    def _fresh(self, entry: _CachedJwks, now: datetime) -> bool:
        return entry.fetched_at is not None and now - entry.fetched_at < self._cache_ttl

    def _fetch(self, url: str, previous: _CachedJwks | None, now: datetime) -> _CachedJwks:
        import requests

        attempts = previous.attempts + 1 if previous else 1
        try:
            keys = self._download(url)
        except (requests.RequestException, ValueError) as exc:
            log.warning("JWKS fetch from %s failed: %s", url, type(exc).__name__ if isinstance(exc, requests.RequestException) else exc)
            entry = _CachedJwks(keys=previous.keys if previous else {},
                                fetched_at=previous.fetched_at if previous else None,
                                last_attempt=now, failed=True, attempts=attempts)
        else:
            entry = _CachedJwks(keys=keys, fetched_at=now, last_attempt=now, attempts=attempts)
        with self._cache_lock:
            self._cache[url] = entry
        return entry

    def _download(self, url: str) -> dict[str, dict[str, Any]]:
        session = self._session
        if session is None:
            import requests

            session = self._session = requests.Session()
        # No redirects: a redirect could lead off the allowlisted URL.
        with session.get(url, timeout=self._fetch_timeout, allow_redirects=False, stream=True,
                         headers={"Accept": "application/json, application/jwk-set+json"}) as resp:
            if resp.status_code != 200:
                raise ValueError(f"HTTP {resp.status_code}")
            body = bytearray()
            for chunk in resp.iter_content(chunk_size=16384):
                body.extend(chunk)
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError(f"larger than {MAX_JWKS_BYTES} bytes")
        try:
            data = json.loads(bytes(body))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ValueError("not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise ValueError("not a JWK Set")
        keys: dict[str, dict[str, Any]] = {}
        for jwk in data["keys"]:
            # Keys without a kid cannot be selected (CDS Hooks requires kid);
            # other malformed keys are skipped, and refused if ever selected.
            if isinstance(jwk, dict) and isinstance(jwk.get("kid"), str) and jwk["kid"]:
                keys.setdefault(jwk["kid"], jwk)
        return keys
