"""SSRF through the hook endpoint: every fhirServer trick is refused before any
network call, and redirects or `next` links cannot lead the service (and the
EHR's access token) off the request's own allowed FHIR server.

`responses` answers every URL here, so a call that should not happen is
recorded rather than failing with a connection error: the tests count calls.
"""

from __future__ import annotations

import json
import re

import pytest
import responses

from cds_service.services.prefetch_templates import PREFETCH

from requests_for_tests import FHIR, PATIENT_ID, hook_request

PV = "/cds-services/osteoporosis-patient-view"
IP_BASE = "https://10.1.2.3/fhir"
IPV6_BASE = "https://[2001:db8::5]/fhir"
TOKEN = "ssrf-test-token"
ANY_URL = re.compile(r".*")


@pytest.fixture
def client(make_app):
    app = make_app(CDS_ALLOWED_FHIR_SERVERS=f"{FHIR},{IP_BASE},{IPV6_BASE}", CDS_FHIR_RETRIES="0")
    return app.test_client()


def empty_bundle_json() -> str:
    return json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": []})


def answer_everything(rsps: responses.RequestsMock) -> None:
    for method in (responses.GET, responses.POST, responses.HEAD):
        rsps.add_callback(method, ANY_URL, callback=lambda request: (200, {}, empty_bundle_json()))


def call_with_server(client, server):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        answer_everything(rsps)
        resp = client.post(PV, json=hook_request(prefetch={}, fhir_server=server, token=TOKEN))
        return resp, list(rsps.calls)


REFUSED = [
    # user information
    "https://user:pw@fhir.example.org/r4",
    "https://fhir.example.org@evil.example/r4",
    "https://fhir.example.org:443@evil.example/r4",
    "https://evil.example#@fhir.example.org/r4",
    "https://fhir.example.org\\@evil.example/r4",
    # IP literals: not listed, loopback, link-local metadata, IPv6, mapped
    "https://127.0.0.1/r4",
    "https://169.254.169.254/latest/meta-data",
    "https://[::1]/r4",
    "https://[::ffff:127.0.0.1]/r4",
    "https://[::ffff:a9fe:a9fe]/latest",
    "https://[fe80::1%25eth0]/r4",
    # numeric forms of 127.0.0.1 and 169.254.169.254
    "https://2130706433/r4",
    "https://0x7f000001/r4",
    "https://0x7f.0.0.1/r4",
    "https://0177.0.0.1/r4",
    "https://127.1/r4",
    "https://2852039166/latest",
    "https://0xa9fea9fe/latest",
    "https://0251.0376.0251.0376/latest",
    "https://169.254.43518/latest",
    # numeric and non-canonical forms of the allowed IP bases
    "https://167838211/fhir",
    "https://0x0a010203/fhir",
    "https://012.1.2.3/fhir",
    "https://10.1.515/fhir",
    "https://[::ffff:10.1.2.3]/fhir",
    "https://[::ffff:a01:203]/fhir",
    "https://[2001:db8:0:0::5]/fhir",
    "https://[2001:DB8::5]:8443/fhir",
    # downgrade, other port, look-alike hosts
    "http://fhir.example.org/r4",
    "https://fhir.example.org:8443/r4",
    "https://fhir.example.org./r4",
    "https://fhir.example.org.evil.example/r4",
    "https://fhir%2eexample.org/r4",
    "https://fhir.ex\u0430mple.org/r4",  # Cyrillic "a"
    "https://xn--fhir-example-xyz.org/r4",
    # path escapes
    "https://fhir.example.org/r4/../admin",
    "https://fhir.example.org/r4/./../admin",
    "https://fhir.example.org/r4/%2e%2e/admin",
    "https://fhir.example.org/r4%2f..%2fadmin",
    "https://fhir.example.org/r4x",
    "https://fhir.example.org/",
    "https://fhir.example.org",
    # credentials or anything else in the query, fragments
    "https://fhir.example.org/r4?access_token=stolen",
    "https://fhir.example.org/r4?_format=json",
    "https://fhir.example.org/r4#frag",
    # not http(s) or not absolute
    "ftp://fhir.example.org/r4",
    "file:///etc/passwd",
    "gopher://fhir.example.org/r4",
    "//fhir.example.org/r4",
    "/r4",
    "https://fhir.example.org/r4 ",
    "https://fhir.example.org/r4\n",
]


@pytest.mark.parametrize("server", REFUSED)
def test_refused_fhir_server_makes_no_network_call(client, server):
    resp, calls = call_with_server(client, server)
    assert calls == [], [c.request.url for c in calls]
    assert resp.status_code in (400, 412), resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["error"] in ("invalid_request", "prefetch_unavailable")
    assert TOKEN not in resp.get_data(as_text=True)


@pytest.mark.parametrize("server", [FHIR, FHIR + "/", FHIR + "/tenant-a", IP_BASE, IPV6_BASE])
def test_allowed_fhir_servers_are_called(client, server):
    # The other side of the coin: the refusals above are not a broken client.
    resp, calls = call_with_server(client, server)
    assert len(calls) == len(PREFETCH)  # every prefetch key fetched once
    assert all(c.request.url.startswith(server.rstrip("/") + "/") for c in calls)
    assert all(c.request.headers["Authorization"] == f"Bearer {TOKEN}" for c in calls)


OFF_SERVER = [
    "https://evil.example/steal",
    "http://fhir.example.org/r4/Patient/pat-1",          # downgrade on redirect
    "https://fhir.example.org/admin",                    # same host, outside the base path
    "https://fhir.example.org/r4/../admin",
    "https://169.254.169.254/latest/meta-data",
    "https://fhir.example.org@evil.example/r4/Patient/pat-1",
    "https://fhir.example.org:8443/r4/Patient/pat-1",
    f"{IP_BASE}/Patient/pat-1",                            # another allowed server: still not this request's
]


def only_the_allowed_server_was_called(calls) -> None:
    urls = [c.request.url for c in calls]
    assert urls, "the allowed server was not called at all"
    assert all(u.startswith(FHIR + "/") for u in urls), urls


@pytest.mark.parametrize("target", OFF_SERVER)
def test_redirect_off_the_server_is_not_followed(client, target):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, f"{FHIR}/Patient/{PATIENT_ID}", status=302, headers={"Location": target})
        answer_everything(rsps)  # anything else answers, so a followed redirect would be seen
        resp = client.post(PV, json=hook_request(prefetch={}, token=TOKEN))
        calls = list(rsps.calls)
    only_the_allowed_server_was_called(calls)
    assert resp.status_code == 412
    assert "refused to follow" in resp.get_json()["message"]


@pytest.mark.parametrize("target", OFF_SERVER + ["/admin", "//evil.example/x", "../../admin"])
def test_next_link_off_the_server_is_not_followed(client, target):
    page = {"resourceType": "Bundle", "type": "searchset", "entry": [],
            "link": [{"relation": "next", "url": target}]}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/Condition\?.*"), json=page)
        answer_everything(rsps)
        prefetch = hook_request()["prefetch"]
        del prefetch["conditions"]
        resp = client.post(PV, json=hook_request(prefetch=prefetch, token=TOKEN))
        calls = list(rsps.calls)
    only_the_allowed_server_was_called(calls)
    assert len(calls) == 1
    assert resp.status_code == 412


def test_redirect_within_the_base_is_followed_with_the_token(client):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, f"{FHIR}/Patient/{PATIENT_ID}", status=301,
                 headers={"Location": f"{FHIR}/Patient/{PATIENT_ID}/_history/2"})
        rsps.add(responses.GET, f"{FHIR}/Patient/{PATIENT_ID}/_history/2",
                 json={"resourceType": "Patient", "id": PATIENT_ID})
        answer_everything(rsps)
        prefetch = hook_request()["prefetch"]
        del prefetch["patient"]
        resp = client.post(PV, json=hook_request(prefetch=prefetch, token=TOKEN))
        urls = [c.request.url for c in rsps.calls]
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert urls == [f"{FHIR}/Patient/{PATIENT_ID}", f"{FHIR}/Patient/{PATIENT_ID}/_history/2"]


def test_a_patient_id_cannot_steer_the_query_off_the_server(client):
    # context.patientId is filled into the queries: the schema refuses anything
    # but a FHIR id (no network call), and the filling percent-encodes anyway.
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        answer_everything(rsps)
        resp = client.post(PV, json=hook_request(prefetch={}, token=TOKEN, patientId="../../admin?x=@evil.example/#"))
        assert resp.status_code == 400 and len(rsps.calls) == 0
    from cds_service.fhir.prefetch import render_template
    filled = render_template("Patient/{{context.patientId}}", {"patientId": "../../admin?x=@evil.example/#"})
    assert filled == "Patient/..%2F..%2Fadmin%3Fx%3D%40evil.example%2F%23"
