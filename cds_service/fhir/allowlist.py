"""Which FHIR servers the service may contact (SSRF protection).

A hook request names its own `fhirServer`, and the service sends that server
the EHR's access token. So a fhirServer is contacted only if, after
normalisation, it lies under one of the configured base URLs
(CDS_ALLOWED_FHIR_SERVERS): same scheme, same host, same port, and a path
under the configured path on a segment boundary. Anything odd about the URL
(userinfo, encoded or numeric host tricks, fragments) is refused outright
rather than interpreted, and https is required except for loopback servers
when the development setting allows them.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from urllib.parse import urlsplit

# A fhirServer base URL; URLs the service builds or follows have their own,
# larger limit (CDS_FHIR_MAX_URL_LENGTH).
MAX_BASE_URL_LENGTH = 2048
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
_BRACKETED_HOST = re.compile(r"\[([0-9A-Fa-f:.]+)\](:[0-9]*)?")
# Each URL scheme's default port: a URL naming it names the same server as one with no
# port. The one table for every comparison of hosts (fhirServer, references to the patient,
# JWKS and CORS URLs, the request's own Host, which may be a websocket's: ws, wss).
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
LOOPBACK_NAMES = {"localhost"}


class NotAllowed(ValueError):
    """The URL may not be contacted; the message says why (never echoes a token)."""


@dataclasses.dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int
    path: str  # normalised: no trailing slash, "" for the root

    def url(self) -> str:
        default = DEFAULT_PORTS[self.scheme]
        port = "" if self.port == default else f":{self.port}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}{port}{self.path}"

    def contains(self, other: "Origin") -> bool:
        if (self.scheme, self.host, self.port) != (other.scheme, other.host, other.port):
            return False
        return other.path == self.path or other.path.startswith(self.path + "/")


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def malformed(url: str) -> str | None:
    """Why `url` cannot even be parsed as a URL, or None.

    Python's URL functions raise ValueError on these (a bracketed host that
    is not an IPv6 address, an unbalanced bracket, a port out of range), and
    so does requests when it meets one in a redirect's Location; everything
    that reads a URL from outside asks this first, so such a URL is a
    refusal rather than an exception."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        return "is not a well-formed URL (malformed host or port)"
    host_port = parts.netloc.rpartition("@")[2]
    if "[" in host_port or "]" in host_port:
        match = _BRACKETED_HOST.fullmatch(host_port)
        if match is None or not _is_ip_literal(match.group(1)):
            return "is not a well-formed URL (a bracketed host must be a plain IPv6 address)"
    return None


def parse_origin(url: str, *, allow_query: bool = False, max_length: int = MAX_BASE_URL_LENGTH,
                 what: str = "fhirServer") -> Origin:
    """Parse a URL strictly; raise NotAllowed for anything ambiguous.

    `allow_query` is for URLs the service builds or follows (searches, Bundle
    `next` links), not for the fhirServer base itself. `what` names the URL
    in messages."""
    if not isinstance(url, str) or not url:
        raise NotAllowed(f"{what} must be an absolute http(s) URL")
    if len(url) > max_length:
        raise NotAllowed(f"{what} is longer than {max_length} characters")
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url) or "\\" in url:
        raise NotAllowed(f"{what} contains whitespace, control characters or backslashes")
    problem = malformed(url)
    if problem:
        raise NotAllowed(f"{what} {problem}")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise NotAllowed(f"{what} must be an absolute URL using http or https")
    if "@" in parts.netloc:
        raise NotAllowed(f"{what} must not contain user information")
    if parts.fragment or (parts.query and not allow_query):
        raise NotAllowed(f"{what} must be a base URL without query or fragment")
    host = (parts.hostname or "").lower()
    if not host:
        raise NotAllowed(f"{what} has no host")
    if "%" in parts.netloc:
        raise NotAllowed(f"{what} host must not be percent-encoded")
    if not _is_ip_literal(host) and not _HOSTNAME.match(host):
        # Catches numeric tricks such as 2130706433 or 0x7f.1, which some
        # resolvers turn into IP addresses.
        raise NotAllowed(f"{what} host is not a valid host name")
    if host.rstrip(".") != host:
        raise NotAllowed(f"{what} host must not end with a dot")
    port = parts.port or DEFAULT_PORTS[scheme]
    path = parts.path.rstrip("/")
    if "%" in path or "/./" in f"{path}/" or "/../" in f"{path}/":
        raise NotAllowed(f"{what} path must not contain encoded characters or dot segments")
    return Origin(scheme=scheme, host=host, port=port, path=path)


class FhirServerAllowlist:
    def __init__(self, allowed: tuple[str, ...], *, allow_loopback_http: bool = False):
        self.allow_loopback_http = allow_loopback_http
        self.origins: list[Origin] = []
        for entry in allowed:
            try:
                self.origins.append(parse_origin(entry))
            except NotAllowed as exc:
                raise ValueError(f"CDS_ALLOWED_FHIR_SERVERS entry {entry!r}: {exc}") from None

    def check(self, url: str, *, allow_query: bool = False, max_length: int = MAX_BASE_URL_LENGTH,
              what: str = "fhirServer") -> Origin:
        """Return the normalised origin of `url`, or raise NotAllowed."""
        origin = parse_origin(url, allow_query=allow_query, max_length=max_length, what=what)
        if origin.scheme == "http" and not (self.allow_loopback_http and is_loopback(origin.host)):
            raise NotAllowed(f"{what} must use https (plain http only for loopback in development)")
        if not any(allowed.contains(origin) for allowed in self.origins):
            raise NotAllowed(f"{what} is not on this service's allowlist (CDS_ALLOWED_FHIR_SERVERS)")
        return origin

    def allows(self, url: str) -> bool:
        try:
            self.check(url)
            return True
        except NotAllowed:
            return False
