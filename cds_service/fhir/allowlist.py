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

_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
_DEFAULT_PORTS = {"http": 80, "https": 443}
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
        default = _DEFAULT_PORTS[self.scheme]
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


def parse_origin(url: str, *, allow_query: bool = False) -> Origin:
    """Parse a URL strictly; raise NotAllowed for anything ambiguous.

    `allow_query` is for URLs the service builds or follows (searches, Bundle
    `next` links), not for the fhirServer base itself."""
    if not isinstance(url, str) or not url or len(url) > 2048:
        raise NotAllowed("fhirServer must be an absolute http(s) URL")
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url) or "\\" in url:
        raise NotAllowed("fhirServer contains whitespace, control characters or backslashes")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise NotAllowed("fhirServer must use http or https")
    if "@" in parts.netloc:
        raise NotAllowed("fhirServer must not contain user information")
    if parts.fragment or (parts.query and not allow_query):
        raise NotAllowed("fhirServer must be a base URL without query or fragment")
    host = (parts.hostname or "").lower()
    if not host:
        raise NotAllowed("fhirServer has no host")
    if "%" in parts.netloc:
        raise NotAllowed("fhirServer host must not be percent-encoded")
    if not _is_ip_literal(host) and not _HOSTNAME.match(host):
        # Catches numeric tricks such as 2130706433 or 0x7f.1, which some
        # resolvers turn into IP addresses.
        raise NotAllowed("fhirServer host is not a valid host name")
    if host.rstrip(".") != host:
        raise NotAllowed("fhirServer host must not end with a dot")
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        raise NotAllowed("fhirServer has an invalid port") from None
    path = parts.path.rstrip("/")
    if "%" in path or "/./" in f"{path}/" or "/../" in f"{path}/":
        raise NotAllowed("fhirServer path must not contain encoded characters or dot segments")
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

    def check(self, url: str, *, allow_query: bool = False) -> Origin:
        """Return the normalised origin of `url`, or raise NotAllowed."""
        origin = parse_origin(url, allow_query=allow_query)
        if origin.scheme == "http" and not (self.allow_loopback_http and is_loopback(origin.host)):
            raise NotAllowed("fhirServer must use https (plain http only for loopback in development)")
        if not any(allowed.contains(origin) for allowed in self.origins):
            raise NotAllowed("fhirServer is not on this service's allowlist (CDS_ALLOWED_FHIR_SERVERS)")
        return origin

    def allows(self, url: str) -> bool:
        try:
            self.check(url)
            return True
        except NotAllowed:
            return False
