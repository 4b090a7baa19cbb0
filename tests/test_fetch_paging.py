"""Paging and fetching that survive real FHIR servers: `_count` on every
search, long query-repeating `next` links, one failing key among several,
and keys fetched at the same time."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

import pytest
import responses

from cds_service.config import load_settings
from cds_service.fhir.allowlist import FhirServerAllowlist
from cds_service.fhir.prefetch import resolve_prefetch
from cds_service.services.prefetch_templates import PAGE_SIZE, PREFETCH, REQUIRED
from fhir_test_server import FhirTestServer
from requests_for_tests import FHIR, PATIENT_ID, empty_bundle, hook_request, patient

PV = "/cds-services/osteoporosis-patient-view"


def bundle(resources, next_url=None):
    page = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}
    if next_url:
        page["link"] = [{"relation": "self", "url": "ignored"}, {"relation": "next", "url": next_url}]
    return page


def med(i):
    return {"resourceType": "MedicationRequest", "id": f"mr-{i}", "status": "completed", "intent": "order",
            "subject": {"reference": f"Patient/{PATIENT_ID}"}}


def serve_everything(rsps):
    rsps.add(responses.GET, f"{FHIR}/Patient/{PATIENT_ID}", json=patient())
    rsps.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/[A-Za-z]+\?.*"), json=empty_bundle())


def only_missing(key):
    return hook_request(prefetch={k: v for k, v in hook_request()["prefetch"].items() if k != key}, token="t")


def test_every_search_asks_for_a_page_size_and_is_keyed_on_the_context_patient():
    assert PREFETCH["patient"] == "Patient/{{context.patientId}}"
    for key, template in PREFETCH.items():
        if key == "patient":
            continue
        query = template.split("?", 1)[1].split("&")
        assert f"_count={PAGE_SIZE}" in query, key
        assert "patient={{context.patientId}}" in query, key


def query_repeating_link(total_length: int) -> str:
    """A next link as some servers write it: the whole query again, plus paging state."""
    start = f"{FHIR}/{PREFETCH['observations'].replace('{{context.patientId}}', PATIENT_ID)}&_getpagesoffset=100"
    return start + "&_state=" + "x" * (total_length - len(start) - len("&_state="))


@pytest.mark.parametrize("length", [2100, 7000, 8192])
def test_long_query_repeating_next_links_are_followed(client, length):
    next_url = query_repeating_link(length)
    assert len(next_url) == length
    obs = {"resourceType": "Observation", "id": "o2", "status": "final",
           "subject": {"reference": f"Patient/{PATIENT_ID}"}, "code": {"text": "x"}}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, next_url, json=bundle([obs]))
        rsps.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/Observation\?.*"), json=bundle([], next_url))
        resp = client.post(PV, json=only_missing("observations"))
        urls = [c.request.url for c in rsps.calls]
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert len(urls) == 2 and unquote(urls[1]) == next_url  # as sent: requests encodes the "|"s


@pytest.mark.parametrize("limit,length", [(8192, 8193), (4096, 7000)])
def test_a_next_link_over_the_limit_is_refused_saying_so(make_app, limit, length):
    client = make_app(CDS_FHIR_MAX_URL_LENGTH=str(limit)).test_client()
    next_url = query_repeating_link(length)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/Observation\?.*"), json=bundle([], next_url))
        resp = client.post(PV, json=only_missing("observations"))
        assert len(rsps.calls) == 1
    assert resp.status_code == 412
    reason = resp.get_json()["details"]["failed"]["observations"]
    assert reason == f"refused to follow a Bundle next link: the URL is longer than {limit} characters"


def test_the_url_length_setting_has_a_floor():
    with pytest.raises(ValueError, match="CDS_FHIR_MAX_URL_LENGTH.*must be at least 4096"):
        load_settings({"CDS_FHIR_MAX_URL_LENGTH": "1000"})


def test_hundreds_of_medication_requests_on_small_pages_are_all_read():
    # A server that ignores _count and sends 20 a page: 350 requests take 18 pages.
    settings = load_settings({"CDS_ALLOWED_FHIR_SERVERS": FHIR})
    meds = [med(i) for i in range(350)]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        for offset in range(0, 350, 20):
            more = f"{FHIR}?_getpages=abc&_getpagesoffset={offset + 20}" if offset + 20 < 350 else None
            url = f"{FHIR}?_getpages=abc&_getpagesoffset={offset}" if offset else \
                re.compile(rf"{re.escape(FHIR)}/MedicationRequest\?.*")
            rsps.add(responses.GET, url, json=bundle(meds[offset:offset + 20], more))
        result = resolve_prefetch(templates=PREFETCH, required=REQUIRED, body=only_missing("medicationRequests"),
                                  settings=settings, allowlist=FhirServerAllowlist((FHIR,)))
        assert len(rsps.calls) == 18
    assert [e["resource"]["id"] for e in result.data["medicationRequests"]["entry"]] == [m["id"] for m in meds]


def test_one_failing_key_is_named_and_every_other_key_is_still_fetched(make_app):
    client = make_app(CDS_FHIR_RETRIES="0").test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/Condition\?.*"), status=500, json={})
        rsps.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/MedicationStatement\?.*"), status=400, json={})
        serve_everything(rsps)
        resp = client.post(PV, json=hook_request(prefetch={}, token="t"))
        paths = sorted(urlsplit(c.request.url).path for c in rsps.calls)
    assert resp.status_code == 412
    body = resp.get_json()
    assert body["details"] == {
        "missing": ["conditions"],
        "failed": {"conditions": "the FHIR server answered 500",
                   "medicationStatements": "the FHIR server answered 400"},
    }
    assert body["message"] == "the data this service needs could not be had: conditions: the FHIR server answered 500"
    # Every key was asked for once, the failing ones included.
    assert paths == sorted(urlsplit(f"{FHIR}/" + t.replace("{{context.patientId}}", PATIENT_ID)).path
                           for t in PREFETCH.values())


def test_an_optional_key_failing_alone_still_answers(make_app):
    client = make_app(CDS_FHIR_RETRIES="0").test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/Procedure\?.*"), status=500, json={})
        serve_everything(rsps)
        resp = client.post(PV, json=hook_request(prefetch={}, token="t"))
    assert resp.status_code == 200, resp.get_data(as_text=True)


def searches_asked(server):
    return [q for q in server.requests if "?" in q]


@pytest.mark.parametrize("concurrency", [2, 4])
def test_keys_are_fetched_at_the_same_time_up_to_the_setting(make_app, concurrency):
    with FhirTestServer([patient()]) as fhir:
        fhir.hold_until(concurrency)
        client = make_app(CDS_ALLOWED_FHIR_SERVERS=fhir.base, CDS_ALLOW_LOOPBACK_HTTP="true",
                          CDS_FHIR_CONCURRENCY=str(concurrency), CDS_FHIR_TIMEOUT_SECONDS="10").test_client()
        resp = client.post(PV, json=hook_request(prefetch={}, token="t", fhir_server=fhir.base))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert len(fhir.requests) == len(PREFETCH)
    assert all(f"patient={PATIENT_ID}" in q and f"_count={PAGE_SIZE}" in q for q in searches_asked(fhir))
    # Reached the setting (a client fetching one key at a time would show 1), never more.
    assert fhir.max_in_flight == concurrency


def test_one_at_a_time_when_so_configured(make_app):
    with FhirTestServer([patient()]) as fhir:
        client = make_app(CDS_ALLOWED_FHIR_SERVERS=fhir.base, CDS_ALLOW_LOOPBACK_HTTP="true",
                          CDS_FHIR_CONCURRENCY="1").test_client()
        resp = client.post(PV, json=hook_request(prefetch={}, token="t", fhir_server=fhir.base))
    assert resp.status_code == 200
    assert fhir.max_in_flight == 1 and len(fhir.requests) == len(PREFETCH)


# --- a sent Bundle that is only the first page ----------------------------------------

def cond(i):
    return {"resourceType": "Condition", "id": f"c{i}", "subject": {"reference": f"Patient/{PATIENT_ID}"}}


def first_page_sent(key="conditions", next_url=f"{FHIR}/Condition?patient={PATIENT_ID}&page=2", **kw):
    body = hook_request(**kw)
    body["prefetch"][key] = bundle([cond(1), cond(2)], next_url)
    return body


def test_a_sent_first_page_is_completed_from_the_fhir_server():
    settings = load_settings({"CDS_ALLOWED_FHIR_SERVERS": FHIR})
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, f"{FHIR}/Condition?patient={PATIENT_ID}&page=2",
                 json=bundle([cond(3)], f"{FHIR}/Condition?patient={PATIENT_ID}&page=3"))
        rsps.add(responses.GET, f"{FHIR}/Condition?patient={PATIENT_ID}&page=3", json=bundle([cond(4)]))
        result = resolve_prefetch(templates=PREFETCH, required=REQUIRED, body=first_page_sent(token="t"),
                                  settings=settings, allowlist=FhirServerAllowlist((FHIR,)))
        assert all(c.request.headers["Authorization"] == "Bearer t" for c in rsps.calls)
    assert [e["resource"]["id"] for e in result.data["conditions"]["entry"]] == ["c1", "c2", "c3", "c4"]
    assert result.fetched == ("conditions",)


def test_a_sent_first_page_through_the_endpoint(client):
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, f"{FHIR}/Condition?patient={PATIENT_ID}&page=2", json=bundle([cond(3)]))
        assert client.post(PV, json=first_page_sent()).status_code == 200


def test_a_sent_first_page_that_cannot_be_completed_is_412_for_a_needed_key(client):
    resp = client.post(PV, json=first_page_sent(fhir_server=None))
    assert resp.status_code == 412
    assert resp.get_json()["details"]["failed"] == {
        "conditions": "the prefetched Bundle has more pages (a next link), "
                      "and the request names no fhirServer to fetch it from"}


def test_a_sent_first_page_of_an_optional_key_is_used_as_it_is_when_it_cannot_be_completed():
    settings = load_settings({"CDS_ALLOWED_FHIR_SERVERS": FHIR})
    body = first_page_sent("procedures", fhir_server=None)
    result = resolve_prefetch(templates=PREFETCH, required=REQUIRED, body=body, settings=settings,
                              allowlist=FhirServerAllowlist((FHIR,)))
    assert [e["resource"]["id"] for e in result.data["procedures"]["entry"]] == ["c1", "c2"]
    assert "more pages" in result.unavailable["procedures"]


def test_a_sent_next_link_off_the_server_is_not_followed(client):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, re.compile(".*"), json=empty_bundle())
        resp = client.post(PV, json=first_page_sent(next_url="https://evil.example/steal?page=2", token="t"))
        assert len(rsps.calls) == 0
    assert resp.status_code == 412
    assert resp.get_json()["details"]["failed"]["conditions"].startswith("refused to follow a Bundle next link")
