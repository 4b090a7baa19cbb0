"""FHIR server allowlist: normalisation and the tricks it must refuse."""

from __future__ import annotations

import pytest

from cds_service.fhir.allowlist import FhirServerAllowlist, NotAllowed

ALLOW = FhirServerAllowlist(("https://fhir.example.org/r4", "https://EHR.example.com:8443/"),
                            allow_loopback_http=False)


@pytest.mark.parametrize("url", [
    "https://fhir.example.org/r4",
    "https://fhir.example.org/r4/",
    "https://FHIR.example.org:443/r4",
    "https://fhir.example.org/r4/tenant-a",
    "https://ehr.example.com:8443",
    "https://ehr.example.com:8443/any/path",
])
def test_allowed(url):
    assert ALLOW.allows(url)


@pytest.mark.parametrize("url", [
    "https://fhir.example.org/r4x",                 # not a segment boundary
    "https://fhir.example.org/",                    # above the allowed path
    "http://fhir.example.org/r4",                   # downgrade to http
    "https://fhir.example.org:8443/r4",             # other port
    "https://fhir.example.org.evil.com/r4",         # suffix trick
    "https://user:pw@fhir.example.org/r4",          # userinfo
    "https://fhir.example.org@evil.com/r4",         # userinfo trick
    "https://evil.com#@fhir.example.org/r4",        # fragment trick
    "https://fhir.example.org/r4/../admin",         # dot segments
    "https://fhir.example.org/r4/%2e%2e/admin",     # encoded dot segments
    "https://127.0.0.1/r4",                          # IP literal not listed
    "https://2130706433/r4",                         # decimal IP
    "https://0x7f.0.0.1/r4",                         # hex IP
    "https://fhir.example.org./r4",                 # trailing dot
    "https://fhir%2eexample.org/r4",                # encoded host
    "ftp://fhir.example.org/r4",
    "file:///etc/passwd",
    "//fhir.example.org/r4",
    "https://fhir.example.org/r4?x=1",
    "https://fhir.example.org\\@evil.com/r4",
    "https://fhir.example.org/r4 ",
    "",
])
def test_refused(url):
    with pytest.raises(NotAllowed):
        ALLOW.check(url)


def test_loopback_http_only_when_allowed():
    dev = FhirServerAllowlist(("http://localhost:8081/fhir", "http://127.0.0.1:9000"), allow_loopback_http=True)
    assert dev.allows("http://localhost:8081/fhir")
    assert dev.allows("http://127.0.0.1:9000/base")
    prod = FhirServerAllowlist(("http://localhost:8081/fhir",), allow_loopback_http=False)
    assert not prod.allows("http://localhost:8081/fhir")


def test_bad_configuration_entry_is_a_clear_error():
    with pytest.raises(ValueError, match="CDS_ALLOWED_FHIR_SERVERS"):
        FhirServerAllowlist(("not a url",))
