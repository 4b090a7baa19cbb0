"""Client JWTs through the real endpoints: 401 shape, audience, replay across replicas."""

from __future__ import annotations

import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from cds_service.app import create_app
from jwt_for_tests import BASE, ISS, auth, client_key, token, trust_file
from requests_for_tests import hook_request


@pytest.fixture(scope="module")
def key():
    return client_key()


@pytest.fixture
def secured(tmp_path, key):
    issuers = trust_file(tmp_path / "issuers.json", key)

    def factory(**extra):
        settings = {
            "CDS_DATABASE_URL": f"sqlite:///{tmp_path}/cds.db",
            "CDS_AUTH_REQUIRED": "true",
            "CDS_PATIENT_HASH_SECRET": "test-patient-hash-secret-0123456789abcdef",
            "CDS_TRUSTED_ISSUERS": issuers,
            "CDS_PUBLIC_BASE_URL": BASE,
        }
        settings.update(extra)
        return create_app(settings).test_client()

    return factory


PV = "/cds-services/osteoporosis-patient-view"


def test_no_token_is_401_json_with_www_authenticate(secured):
    client = secured()
    for resp in (client.get("/cds-services"), client.post(PV, json=hook_request()),
                 client.post(PV + "/feedback", json={"feedback": []})):
        assert resp.status_code == 401
        assert resp.get_json()["error"] == "unauthorized"
        assert resp.get_json()["details"]["reason"] == "missing_token"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_valid_token_passes_on_every_endpoint(secured, key):
    client = secured()
    assert client.get("/cds-services", headers=auth(token(key, "/cds-services"))).status_code == 200
    assert client.post(PV, json=hook_request(), headers=auth(token(key, PV))).status_code == 200
    fb = {"feedback": [{"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": "2026-01-01T00:00:00Z"}]}
    assert client.post(PV + "/feedback", json=fb, headers=auth(token(key, PV + "/feedback"))).status_code == 200


def test_audience_must_be_the_endpoint_called(secured, key):
    client = secured()
    resp = client.post(PV, json=hook_request(), headers=auth(token(key, "/cds-services/osteoporosis-order-sign")))
    assert resp.status_code == 401
    assert resp.get_json()["details"]["reason"] == "wrong_audience"


def test_replayed_token_is_refused_across_replicas(secured, key):
    tok = token(key, PV)
    first, second = secured(), secured()  # two app instances sharing one database
    assert first.post(PV, json=hook_request(), headers=auth(tok)).status_code == 200
    resp = second.post(PV, json=hook_request(), headers=auth(tok))
    assert resp.status_code == 401
    assert resp.get_json()["details"]["reason"] == "replayed_jti"


def test_token_never_appears_in_the_error(secured, key):
    tok = token(key, PV, exp=int(time.time()) - 3600, iat=int(time.time()) - 4000)
    resp = secured().post(PV, json=hook_request(), headers=auth(tok))
    assert resp.status_code == 401
    assert tok not in resp.get_data(as_text=True)
    assert tok.split(".")[2] not in resp.get_data(as_text=True)


def test_discovery_can_be_opened(secured):
    assert secured(CDS_DISCOVERY_OPEN="true").get("/cds-services").status_code == 200


def test_auth_not_required_lets_calls_through_even_with_a_bad_token(secured):
    client = secured(CDS_AUTH_REQUIRED="false")
    assert client.post(PV, json=hook_request(), headers=auth("not-a-jwt")).status_code == 200
    assert client.post(PV, json=hook_request()).status_code == 200


def test_development_profile_trusts_the_sandbox_issuer(tmp_path):
    client = create_app({"CDS_PROFILE": "development", "CDS_AUTH_REQUIRED": "true",
                         "CDS_DATABASE_URL": f"sqlite:///{tmp_path}/d.db"}).test_client()
    # A token claiming the sandbox issuer but signed by someone else reaches the
    # signature check against the shipped sandbox key, and fails there.
    forged = jwt.encode({"iss": "https://sandbox.cds-hooks.org", "aud": "http://localhost/cds-services",
                         "iat": int(time.time()), "exp": int(time.time()) + 60, "jti": "x"},
                        ec.generate_private_key(ec.SECP384R1()), algorithm="ES384",
                        headers={"kid": "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f",
                                 "jku": "https://sandbox.cds-hooks.org/.well-known/jwks.json"})
    resp = client.get("/cds-services", headers=auth(forged))
    assert resp.status_code == 401
    assert resp.get_json()["details"]["reason"] == "bad_signature"


def test_production_never_trusts_the_sandbox(tmp_path, key):
    issuers = tmp_path / "i.json"
    issuers.write_text(json.dumps({ISS: {"jwks": {"keys": [key[1]]}}}))
    client = create_app({"CDS_DATABASE_URL": f"sqlite:///{tmp_path}/p.db", "CDS_TRUSTED_ISSUERS": str(issuers),
                         "CDS_PATIENT_HASH_SECRET": "test-patient-hash-secret-0123456789abcdef",
                         "CDS_PUBLIC_BASE_URL": BASE}).test_client()
    tok = jwt.encode({"iss": "https://sandbox.cds-hooks.org", "aud": BASE + "/cds-services",
                      "iat": int(time.time()), "exp": int(time.time()) + 60, "jti": "y"},
                     key[0], algorithm="ES384", headers={"kid": "k1"})
    resp = client.get("/cds-services", headers=auth(tok))
    assert resp.status_code == 401
    assert resp.get_json()["details"]["reason"] == "unknown_issuer"


def test_without_fhir_server_quieting_keeps_each_ehr_tenants_patients_apart(secured, key):
    """Prefetch-only calls name no FHIR server: patient "X" of one tenant is not
    patient "X" of another, so feedback in one does not quiet the other's card."""
    from tests.test_quiet_by_default import INFO_CARD, INFO_PATIENT, cards_of, pv_body

    client = secured()
    body = pv_body(INFO_PATIENT)
    del body["fhirServer"]

    def cards(tenant):
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token(key, PV, tenant=tenant)}"
        return cards_of(client, body)

    card = cards("hospital-a")[INFO_CARD]
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token(key, PV + '/feedback', tenant='hospital-a')}"
    fb = {"feedback": [{"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-01-01T10:00:00Z"}]}
    assert client.post(PV + "/feedback", json=fb).get_json() == {"stored": 1, "duplicates": 0, "unknownCards": 0}
    assert INFO_CARD not in cards("hospital-a")
    assert INFO_CARD in cards("hospital-b")


def test_long_lived_tokens_are_refused(secured, key):
    client = secured()
    now = int(time.time())
    for claims in ({"exp": now + 10 * 365 * 86400}, {"iat": 0}):
        resp = client.post(PV, json=hook_request(), headers=auth(token(key, PV, **claims)))
        assert resp.status_code == 401, claims
        assert resp.get_json()["details"]["reason"] == "lifetime_too_long"
    # Control: an hour-long token passes by default; the setting lowers the cap.
    assert client.post(PV, json=hook_request(), headers=auth(token(key, PV, exp=now + 3600))).status_code == 200
    strict = secured(CDS_JWT_MAX_LIFETIME_SECONDS="300")
    assert strict.post(PV, json=hook_request(), headers=auth(token(key, PV))).status_code == 200  # 5 minutes
    resp = strict.post(PV, json=hook_request(), headers=auth(token(key, PV, exp=now + 600)))
    assert resp.get_json()["details"]["reason"] == "lifetime_too_long"


def test_a_browser_client_may_read_www_authenticate(secured):
    resp = secured(CDS_CORS_ORIGINS="https://ehr.example.org").post(
        PV, json=hook_request(), headers={"Origin": "https://ehr.example.org"})
    assert resp.status_code == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
    exposed = [h.strip().lower() for h in resp.headers["Access-Control-Expose-Headers"].split(",")]
    assert "www-authenticate" in exposed and "retry-after" in exposed


# --- the Host header, when CDS_PUBLIC_BASE_URL is not set (bind8 L11) ---

BAD_HOSTS = ["a b", 'x"y', "evil.example:99999", "[::1", "ex.example/../admin", "ex.example?x", "\u00e9x.example", ""]
# Review 11 M5: a name with "_" is used, but with anything else wrong it is still no host.
BAD_HOSTS += ["cds_service:99999", "cds_service:0", "cds_service:", "cds service", 'cds_"service', "cds_service/x",
              "cds_service?x", "cds_s\u00e9rvice", "[::1]_"]


@pytest.mark.parametrize("host", BAD_HOSTS)
def test_an_invalid_host_is_400_on_every_endpoint_that_checks_the_caller(secured, key, host):
    """Review (bind8 L11): with no CDS_PUBLIC_BASE_URL, werkzeug reads an invalid Host as "":
    the JWT audience became http:///cds-services/... and the cards linked http:/guidance/...
    in a 200. Refused with 400 JSON, token or not."""
    client = secured(CDS_PUBLIC_BASE_URL="")
    fb = {"feedback": [{"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": "2026-01-01T00:00:00Z"}]}
    for resp in (client.get("/cds-services", headers={"Host": host}),
                 client.post(PV, json=hook_request(), headers={"Host": host, **auth(token(key, PV))}),
                 client.post(PV + "/feedback", json=fb, headers={"Host": host})):
        assert resp.status_code == 400, (host, resp.get_data(as_text=True))
        assert resp.get_json()["error"] == "invalid_host" and "Host" in resp.get_json()["message"]
        assert "Behind a proxy or ingress, set CDS_PUBLIC_BASE_URL" in resp.get_json()["message"]


@pytest.mark.parametrize("host", ["a b", ""])
def test_an_invalid_host_is_400_without_client_auth_too(make_app, host):
    resp = make_app().test_client().post(PV, json=hook_request(), headers={"Host": host})
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_host"


def test_a_valid_host_builds_the_audience_and_the_links(secured, key):
    """The controls: a valid Host is the audience and the links' base; with CDS_PUBLIC_BASE_URL
    set the Host is not read, so an invalid one changes nothing."""
    client = secured(CDS_PUBLIC_BASE_URL="")
    for host in ("cds.example.org", "cds.example.org:8443", "[::1]:8080"):
        base = f"http://{host}"
        tok = jwt.encode({"iss": ISS, "aud": base + PV, "iat": int(time.time()), "exp": int(time.time()) + 300,
                          "jti": str(uuid.uuid4())}, key[0], algorithm="ES384", headers={"kid": "k1"})
        resp = client.post(PV, json=hook_request(), headers={"Host": host, **auth(tok)})
        assert resp.status_code == 200, resp.get_data(as_text=True)
        links = [link["url"] for card in resp.get_json()["cards"] for link in card["links"]]
        assert links and all(url.startswith(base + "/guidance/") for url in links)
    resp = secured().post(PV, json=hook_request(), headers={"Host": "a b", **auth(token(key, PV))})
    assert resp.status_code == 200
    assert all(link["url"].startswith(BASE + "/guidance/") for c in resp.get_json()["cards"] for link in c["links"])


def test_a_host_name_with_an_underscore_and_the_default_port_is_the_name_alone(secured, key):
    """`Host: cds_service:80` on http is `cds_service`, as werkzeug reads a name it accepts (the
    default ports are one table, allowlist.DEFAULT_PORTS, shared with the patient binding)."""
    client = secured(CDS_PUBLIC_BASE_URL="")
    base = "http://cds_service"
    resp = client.post(PV, json=hook_request(), headers={"Host": "cds_service:80", **auth(token(key, PV, aud=base + PV))})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert all(link["url"].startswith(base + "/guidance/") for c in resp.get_json()["cards"] for link in c["links"])


@pytest.mark.parametrize("host", ["cds_service:8000", "cds_service", "my_app.internal:8443", "CDS_Service"])
def test_a_host_name_with_an_underscore_builds_the_audience_and_the_links(secured, key, host):
    """Review 11 M5: `Host: cds_service:8000` (a docker-compose service name, as nginx passes it
    on by default) was a 400 invalid_host on discovery, hooks and feedback: werkzeug refuses "_"
    and reads the host as "". A plain name is the base of the JWT audience and of the links,
    one value for both (host names are case-blind: werkzeug's URL builder lowercases them)."""
    client = secured(CDS_PUBLIC_BASE_URL="")
    base = f"http://{host.lower()}"
    resp = client.post(PV, json=hook_request(), headers={"Host": host, **auth(token(key, PV, aud=base + PV))})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    links = [link["url"] for card in resp.get_json()["cards"] for link in card["links"]]
    assert links and all(url.startswith(base + "/guidance/") for url in links)
    card = resp.get_json()["cards"][0]["uuid"]
    fb = {"feedback": [{"card": card, "outcome": "overridden", "outcomeTimestamp": "2026-01-01T00:00:00Z"}]}
    fb_token = token(key, PV + "/feedback", aud=base + PV + "/feedback")
    resp = client.post(PV + "/feedback", json=fb, headers={"Host": host, **auth(fb_token)})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    resp = client.get("/cds-services", headers={"Host": host, **auth(token(key, "/cds-services", aud=base + "/cds-services"))})
    assert resp.status_code == 200 and resp.get_json()["services"]
    # The audience is this host's, not another's: a token for another host is refused.
    other = client.post(PV, json=hook_request(), headers={"Host": host, **auth(token(key, PV))})
    assert other.status_code == 401


JKU = "https://ehr.example.org/.well-known/jwks.json"


@pytest.fixture
def jku_only(tmp_path, secured):
    """An issuer trusted by its jku alone: its keys are fetched."""
    path = tmp_path / "jku-issuers.json"
    path.write_text(json.dumps({ISS: {"jku": [JKU]}}))
    return secured(CDS_TRUSTED_ISSUERS=str(path))


def test_unreachable_client_key_set_is_503_with_retry_after(jku_only, key):
    """The client's JWKS cannot be fetched: its token is not wrong, only not
    checked. 503 with Retry-After (the service's side to recover, as for the
    database), not a 401 that would send the EHR after its own credentials."""
    import responses

    with responses.RequestsMock() as mock:
        mock.get(JKU, status=502)
        for path in (PV, "/cds-services", PV + "/feedback"):
            method = jku_only.get if path == "/cds-services" else jku_only.post
            resp = method(path, json=hook_request() if path == PV else {"feedback": []},
                          headers=auth(token(key, path)))
            assert resp.status_code == 503, resp.get_json()
            body = resp.get_json()
            assert (body["error"], body["details"]["reason"]) == ("jwks_unavailable", "jwks_unavailable")
            assert "could not be fetched" in body["message"]
            # Not refetched before the rate limit allows it: that is when to come back.
            assert 1 <= int(resp.headers["Retry-After"]) <= 30
            assert "WWW-Authenticate" not in resp.headers
        assert len(mock.calls) == 1


def test_key_set_that_answers_without_the_key_is_still_401(jku_only, key):
    """Control: a key set fetched but lacking the token's kid is the token's fault."""
    import responses

    other = client_key()
    with responses.RequestsMock() as mock:
        mock.get(JKU, json={"keys": [other[1] | {"kid": "k2"}]})
        resp = jku_only.post(PV, json=hook_request(), headers=auth(token(key, PV)))
    assert resp.status_code == 401
    assert resp.get_json()["details"]["reason"] == "unknown_kid"


def test_rotated_key_while_the_key_set_is_down_is_503_not_401(jku_only, key):
    """The key set was fetched (kid k1); the EHR rotates to k2 while its JWKS host
    fails: k2 may be there, so 503 jwks_unavailable with Retry-After, not a 401
    that would send the EHR after its own credentials. k1 keeps working."""
    import responses

    rotated_token = jwt.encode({"iss": ISS, "aud": "https://cds.example.org" + PV, "iat": int(time.time()),
                                "exp": int(time.time()) + 300, "jti": str(uuid.uuid4())},
                               client_key()[0], algorithm="ES384", headers={"kid": "k2", "typ": "JWT"})
    with responses.RequestsMock() as mock:
        mock.get(JKU, json={"keys": [key[1]]})
        assert jku_only.post(PV, json=hook_request(), headers=auth(token(key, PV))).status_code == 200
        mock.replace(responses.GET, JKU, body=responses.ConnectionError("refused"))
        time.sleep(5.05)  # past the refetch interval: the unknown kid is looked for again
        resp = jku_only.post(PV, json=hook_request(), headers=auth(rotated_token))
        assert resp.status_code == 503, resp.get_json()
        body = resp.get_json()
        assert (body["error"], body["details"]["reason"]) == ("jwks_unavailable", "jwks_unavailable")
        assert "'k2'" in body["message"] and "could not be fetched" in body["message"]
        assert 1 <= int(resp.headers["Retry-After"]) <= 5 and "WWW-Authenticate" not in resp.headers
        # Control: the cached key is still accepted during the outage, without a fetch.
        assert jku_only.post(PV, json=hook_request(), headers=auth(token(key, PV))).status_code == 200
        assert len(mock.calls) == 2
