"""A hostile (allowlisted) FHIR server cannot hold a hook call past its time
budget, fill a worker's memory, crash the call with deep JSON, or steer the
token to another patient's search with a `next` link.

The slow and endless replies come from a real server on loopback: `responses`
hands over a body at once, so it cannot show what a socket does."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import responses

from cds_service.fhir.allowlist import FhirServerAllowlist
from cds_service.fhir.client import FhirClient, FhirError
from cds_service.services.prefetch_templates import PREFETCH
from requests_for_tests import FHIR, PATIENT_ID, empty_bundle, hook_request, patient

PV = "/cds-services/osteoporosis-patient-view"
BUDGET = 1.5  # CDS_FHIR_TOTAL_TIMEOUT_SECONDS in these tests


class HostileServer:
    """Answers the Patient read as `patient_mode` says and every search with an empty Bundle.

    Modes: "drip-body" (headers at once, then a byte every 0.1 s), "drip-headers"
    (the header lines a byte every 0.1 s), "endless" (a chunked body that never
    ends), "ok"."""

    def __init__(self, patient_mode: str):
        self.mode = patient_mode
        self.sent = 0  # body bytes of the endless reply written
        self.finished = threading.Event()  # the hostile reply stopped (the client went away)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._httpd.server_address[1]}/fhir"

    def __enter__(self) -> HostileServer:
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if "/Patient/" in self.path and server.mode != "ok":
                    try:
                        getattr(self, server.mode.replace("-", "_"))()
                    except OSError:
                        pass  # the client hung up: what these tests want
                    finally:
                        server.finished.set()
                        self.close_connection = True
                    return
                body = json.dumps(patient() if "/Patient/" in self.path else empty_bundle()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def drip_body(self) -> None:
                body = json.dumps(patient()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.flush()
                for i in range(len(body)):
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
                    time.sleep(0.1)

            def drip_headers(self) -> None:
                head = b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n" + b"X-Pad: a\r\n" * 30
                for i in range(len(head)):
                    self.wfile.write(head[i:i + 1])
                    self.wfile.flush()
                    time.sleep(0.1)

            def endless(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                piece = b'{"resource":{"resourceType":"Basic"}},' * 1000
                opening = b'{"resourceType":"Bundle","entry":['
                self.wfile.write(b"%x\r\n%s\r\n" % (len(opening), opening))
                while True:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    server.sent += len(piece)

            def log_message(self, *args: object) -> None:
                pass

        return Handler


def fetch_all(make_app, server, **settings):
    client = make_app(CDS_ALLOWED_FHIR_SERVERS=server.base, CDS_ALLOW_LOOPBACK_HTTP="true",
                      CDS_FHIR_TOTAL_TIMEOUT_SECONDS=str(BUDGET), CDS_FHIR_TIMEOUT_SECONDS="1",
                      **settings).test_client()
    started = time.monotonic()
    resp = client.post(PV, json=hook_request(prefetch={}, token="t", fhir_server=server.base))
    return resp, time.monotonic() - started


# --- the time budget holds however slowly the server answers -----------------------

@pytest.mark.parametrize("mode", ["drip-body", "drip-headers"])
def test_a_server_dripping_its_reply_is_cut_at_the_budget_and_answered_412(make_app, mode):
    # Each byte comes well within the 1 s read timeout: before, the call lasted
    # as long as the server liked (~13 s for the body here, 66 s in the review).
    with HostileServer(mode) as server:
        resp, took = fetch_all(make_app, server)
        assert server.finished.wait(2), "the connection was not shut"
    assert resp.status_code == 412, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["details"]["missing"] == ["patient"]
    assert body["details"]["failed"]["patient"] == "the FHIR server did not answer in time"
    assert BUDGET - 0.1 < took < BUDGET + 1.0


def test_a_kept_alive_connection_is_not_cut_after_its_request_ended():
    # The deadline's timer of a finished request must not shut the socket the
    # pool hands to the next request on the same connection.
    with HostileServer("ok") as server:
        allowlist = FhirServerAllowlist((server.base,), allow_loopback_http=True)

        def new_client():
            return FhirClient(server.base, access_token="t", allowlist=allowlist, timeout=1, total_timeout=0.3,
                              retries=0, max_pages=5, session=session)

        first = FhirClient(server.base, access_token="t", allowlist=allowlist, timeout=1, total_timeout=0.3,
                           retries=0, max_pages=5)
        session = first.session
        assert first.read(f"Patient/{PATIENT_ID}")["id"] == PATIENT_ID
        time.sleep(0.5)  # the first call's deadline has passed
        for _ in range(3):
            assert new_client().read(f"Condition?patient={PATIENT_ID}")["resourceType"] == "Bundle"
            time.sleep(0.35)


# --- the bytes read are capped --------------------------------------------------------

def test_an_endless_reply_is_read_no_further_than_the_cap(make_app):
    limit = 1_000_000
    with HostileServer("endless") as server:
        resp, took = fetch_all(make_app, server, CDS_MAX_BODY_BYTES=str(limit))
        assert server.finished.wait(2), "the server is still sending"
    assert resp.status_code == 412, resp.get_data(as_text=True)
    assert resp.get_json()["details"]["failed"]["patient"] == (
        "the FHIR server's replies are larger than this service accepts for one hook call (CDS_MAX_BODY_BYTES)")
    assert took < BUDGET
    # What the server got written before the client hung up: the cap plus socket buffers.
    assert server.sent < limit + 8_000_000


def test_a_declared_length_over_the_cap_is_refused_before_reading():
    client = FhirClient(FHIR, access_token="t", allowlist=FhirServerAllowlist((FHIR,)), timeout=1, total_timeout=5,
                        retries=0, max_pages=5, max_bytes=500_000)
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, f"{FHIR}/Patient/{PATIENT_ID}",
                 body=json.dumps(patient()).encode(), headers={"Content-Length": "600000"},
                 auto_calculate_content_length=False)
        with pytest.raises(FhirError) as caught:
            client.read(f"Patient/{PATIENT_ID}")
    assert caught.value.kind == "too_large"


def test_the_cap_is_for_all_replies_of_one_call_together():
    page = json.dumps({**empty_bundle(), "entry": [{"resource": {"resourceType": "Basic", "id": "x" * 100}}] * 900})
    client = FhirClient(FHIR, access_token="t", allowlist=FhirServerAllowlist((FHIR,)), timeout=1, total_timeout=5,
                        retries=0, max_pages=5, max_bytes=2 * len(page) + 100)
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/Condition\?.*"), body=page)
        client.read(f"Condition?patient={PATIENT_ID}")
        client.read(f"Condition?patient={PATIENT_ID}&n=2")
        with pytest.raises(FhirError, match="larger than this service accepts"):
            client.read(f"Condition?patient={PATIENT_ID}&n=3")


def test_a_normal_chart_is_well_within_the_default_cap(client):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, f"{FHIR}/Patient/{PATIENT_ID}", json=patient())
        rsps.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/[A-Za-z]+\?.*"), json=empty_bundle())
        assert client.post(PV, json=hook_request(prefetch={}, token="t")).status_code == 200


# --- replies are read as a sent prefetch is ---------------------------------------------

def fetch_with_patient_reply(client, raw):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, f"{FHIR}/Patient/{PATIENT_ID}", body=raw, content_type="application/fhir+json")
        rsps.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/[A-Za-z]+\?.*"), json=empty_bundle())
        return client.post(PV, json=hook_request(prefetch={}, token="t"))


@pytest.mark.parametrize("raw,reason", [
    (b"[" * 200_000 + b"]" * 200_000, "nests arrays or objects too deeply"),  # was a 500 (RecursionError)
    (b'{"resourceType":"Patient","id":"pat-1","x":' + b"[" * 5000 + b"]" * 5000 + b"}",
     "nests arrays or objects too deeply"),
    (b'{"resourceType":"Patient","id":"pat-1","x":NaN}', None),
    (b'{"resourceType":"Patient","id":"pat-1","x":1e400}', "holds a number beyond a float"),
    (b'{"resourceType":"Patient","id":"pat-1","x":"\\ud800"}', None),
])
def test_a_reply_that_is_not_acceptable_json_is_412_not_500(client, raw, reason):
    resp = fetch_with_patient_reply(client, raw)
    assert resp.status_code == 412, resp.get_data(as_text=True)
    expected = f"the FHIR server sent JSON that {reason}" if reason else "the FHIR server sent something that is not JSON"
    assert resp.get_json()["details"]["failed"] == {"patient": expected}


def test_a_reply_is_read_like_the_same_data_sent_in_the_prefetch(client):
    # A repeated name reads as its last value, as in a sent prefetch: here the right patient.
    raw = b'{"resourceType":"Patient","id":"someone-else","gender":"female","id":"' + PATIENT_ID.encode() + b'"}'
    fetched = fetch_with_patient_reply(client, raw)
    sent = client.post(PV, json=hook_request(prefetch={**hook_request()["prefetch"], "patient": json.loads(raw)}))
    assert fetched.status_code == sent.status_code == 200


def test_a_reply_that_is_not_json_is_still_worded_as_before(client):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, f"{FHIR}/Patient/{PATIENT_ID}", body=b"<html>login</html>")
        rsps.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/[A-Za-z]+\?.*"), json=empty_bundle())
        resp = client.post(PV, json=hook_request(prefetch={}, token="t"))
    assert resp.get_json()["details"]["failed"] == {"patient": "the FHIR server sent something that is not JSON"}


# --- next links: only pages of the same search ---------------------------------------

CONDITIONS = f"{FHIR}/Condition"


def first_page(next_url):
    return {**empty_bundle(), "link": [{"relation": "next", "url": next_url}]}


def fetch_with_conditions_next(client, next_url):
    """Fetch every key; the Condition search's first page links to `next_url`,
    and anything else on the server is an empty Bundle. The answer and the URLs read."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, re.compile(rf"{re.escape(CONDITIONS)}\?patient={PATIENT_ID}&.*"),
                 json=first_page(next_url))
        rsps.add(responses.GET, f"{FHIR}/Patient/{PATIENT_ID}", json=patient())
        rsps.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/?[A-Za-z/]*\?.*"), json=empty_bundle())
        resp = client.post(PV, json=hook_request(prefetch={}, token="t"))
        return resp, [c.request.url for c in rsps.calls]


REFUSED = [
    f"{CONDITIONS}?patient=someone-else&_offset=100",
    f"{CONDITIONS}?_offset=100",  # no patient: a search over everyone
    f"{CONDITIONS}?patient={PATIENT_ID}&patient=someone-else",
    f"{CONDITIONS}?patient={PATIENT_ID}&subject=Patient/someone-else",
    f"{CONDITIONS}?patient={PATIENT_ID}&_has:Observation:patient:code=x",
    f"{CONDITIONS}?patient.name=Smith",
    f"{FHIR}/Patient/someone-else/$everything",
    f"{FHIR}/Observation?patient={PATIENT_ID}",  # another resource type
    f"{FHIR}/Condition/c1",
    f"{FHIR}?_type=Condition&patient=someone-else",
    f"{FHIR}?_getpages=abc&_type=Patient",  # the opaque form with more than paging state
    "Condition?patient=someone-else",  # relative, resolved against the page's URL
]


@pytest.mark.parametrize("next_url", REFUSED)
def test_a_next_link_that_is_not_a_page_of_the_same_search_is_refused_and_not_read(client, next_url, caplog):
    resp, urls = fetch_with_conditions_next(client, next_url)
    assert resp.status_code == 412, resp.get_data(as_text=True)
    reason = resp.get_json()["details"]["failed"]["conditions"]
    assert reason.startswith("refused to follow a Bundle next link: ")
    assert len(urls) == len(PREFETCH)  # the first pages only
    logged = [r for r in caplog.records if r.getMessage() == "refused a Bundle next link"]
    assert len(logged) == 1 and logged[0].resource_type == "Condition"
    fields = json.dumps(vars(logged[0]), default=str)
    assert "someone-else" not in fields and PATIENT_ID not in fields


ACCEPTED = [
    f"{CONDITIONS}?patient={PATIENT_ID}&_offset=100",  # the query repeated with an offset
    f"{CONDITIONS}?_offset=100&patient=Patient/{PATIENT_ID}",  # the patient as a reference
    f"{CONDITIONS}/?patient={PATIENT_ID}&_page_token=abc",  # a trailing slash
    f"{FHIR}?_getpages=abc&_getpagesoffset=100&_count=100&_bundletype=searchset",  # HAPI
    f"{FHIR}/?_getpages=abc&_getpagesoffset=100",
    f"Condition?patient={PATIENT_ID}&page=2",  # relative
]


@pytest.mark.parametrize("next_url", ACCEPTED)
def test_a_next_link_to_a_page_of_the_same_search_is_followed(client, next_url):
    resp, urls = fetch_with_conditions_next(client, next_url)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert len(urls) == len(PREFETCH) + 1


@pytest.mark.parametrize("next_url", [f"{FHIR}/Patient/other/$everything", f"{CONDITIONS}?patient=other",
                                      "Condition?patient=other"])
def test_a_sent_first_page_is_completed_only_with_pages_of_its_own_search(client, next_url):
    body = hook_request(token="t")
    body["prefetch"]["conditions"] = first_page(next_url)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, re.compile(".*"), json=empty_bundle())
        resp = client.post(PV, json=body)
        assert len(rsps.calls) == 0
    assert resp.status_code == 412
    assert resp.get_json()["details"]["failed"]["conditions"].startswith("refused to follow a Bundle next link: ")


def test_refused_next_links_are_counted(client):
    from cds_service import metrics

    before = metrics.FHIR_ERRORS.labels("next_link_refused")._value.get()
    body = hook_request(token="t")
    body["prefetch"]["conditions"] = first_page(f"{CONDITIONS}?patient=other")
    assert client.post(PV, json=body).status_code == 412
    assert metrics.FHIR_ERRORS.labels("next_link_refused")._value.get() == before + 1


def test_the_hostile_server_helper_hangs_up_cleanly():
    # The helper itself: a client that goes away ends the dripping reply.
    with HostileServer("drip-body") as server:
        sock = socket.create_connection(("127.0.0.1", int(server.base.split(":")[2].split("/")[0])))
        sock.sendall(f"GET /fhir/Patient/{PATIENT_ID} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert sock.recv(20).startswith(b"HTTP/1.")
        sock.close()
        assert server.finished.wait(5)


def test_a_compressed_reply_is_capped_by_what_it_unpacks_to():
    import gzip

    unpacked = json.dumps({**empty_bundle(), "entry": [{"resource": {"resourceType": "Basic"}}] * 100_000}).encode()
    packed = gzip.compress(unpacked)
    assert len(packed) < 50_000 < 500_000 < len(unpacked)
    client = FhirClient(FHIR, access_token="t", allowlist=FhirServerAllowlist((FHIR,)), timeout=1, total_timeout=5,
                        retries=0, max_pages=5, max_bytes=500_000)
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/Condition\?.*"), body=packed,
                 headers={"Content-Encoding": "gzip"})
        with pytest.raises(FhirError, match="larger than this service accepts"):
            client.read(f"Condition?patient={PATIENT_ID}")
