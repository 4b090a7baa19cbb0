"""Prefetch fallback to the EHR's FHIR server, with the FHIR server faked by `responses`."""

from __future__ import annotations

import json
import re

import pytest
import requests
import responses

from cds_service.config import load_settings
from cds_service.fhir.allowlist import FhirServerAllowlist
from cds_service.fhir.prefetch import resolve_prefetch
from cds_service.services.prefetch_templates import PREFETCH, REQUIRED
from requests_for_tests import FHIR, PATIENT_ID, empty_bundle, hook_request, patient

PV = "/cds-services/osteoporosis-patient-view"


def bundle(*resources, next_url=None):
    b = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}
    if next_url:
        b["link"] = [{"relation": "next", "url": next_url}]
    return b


def serve_everything(rsps, patient_status=200):
    """Register the FHIR server's answers for every prefetch query."""
    rsps.add(responses.GET, f"{FHIR}/Patient/{PATIENT_ID}", json=patient(), status=patient_status)
    for rtype in ("Observation", "Condition", "MedicationRequest", "MedicationAdministration",
                  "MedicationStatement", "Procedure", "ServiceRequest", "Encounter"):
        rsps.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/{rtype}\?.*"), json=empty_bundle())


def no_prefetch_request(**kw):
    return hook_request(prefetch={}, token="secret-token", **kw)


@responses.activate
def test_missing_prefetch_is_fetched_with_the_bearer_token(client):
    serve_everything(responses)
    resp = client.post(PV, json=no_prefetch_request())
    assert resp.status_code == 200, resp.get_data(as_text=True)
    urls = [c.request.url for c in responses.calls]
    assert f"{FHIR}/Patient/{PATIENT_ID}" in urls
    assert any(u.startswith(f"{FHIR}/Condition?patient={PATIENT_ID}") for u in urls)
    assert any("Observation?patient=pat-1&code=http" in u and "38267-1" in u for u in urls)
    assert len(urls) == 11  # one query per prefetch template (observations and safetyLabs are two)
    # visits: only the therapy kinds (a chart holds hundreds of other encounters)
    assert any(u.startswith(f"{FHIR}/Encounter?patient={PATIENT_ID}&type=") and "97161" in u for u in urls)
    assert any(u.startswith(f"{FHIR}/ServiceRequest?patient={PATIENT_ID}&_count=") for u in urls)
    for call in responses.calls:
        assert call.request.headers["Authorization"] == "Bearer secret-token"


@responses.activate
def test_only_missing_keys_are_fetched(client):
    serve_everything(responses)
    prefetch = hook_request()["prefetch"]
    del prefetch["conditions"]
    resp = client.post(PV, json=hook_request(prefetch=prefetch, token="t"))
    assert resp.status_code == 200
    assert [c.request.url.split("?")[0] for c in responses.calls] == [f"{FHIR}/Condition"]


@responses.activate
def test_operation_outcome_in_prefetch_is_refetched(client):
    serve_everything(responses)
    prefetch = hook_request()["prefetch"]
    prefetch["conditions"] = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]}
    resp = client.post(PV, json=hook_request(prefetch=prefetch))
    assert resp.status_code == 200
    assert len(responses.calls) == 1


@responses.activate
def test_paging_follows_next_links_and_merges_entries():
    settings = load_settings({"CDS_ALLOWED_FHIR_SERVERS": FHIR, "CDS_FHIR_MAX_PAGES": "5"})
    page2 = f"{FHIR}/Condition?patient={PATIENT_ID}&_page=2"
    page3 = f"{FHIR}/Condition?patient={PATIENT_ID}&_page=3"
    responses.add(responses.GET, page2, json=bundle({"resourceType": "Condition", "id": "c2"}, next_url=page3))
    responses.add(responses.GET, page3, json=bundle({"resourceType": "Condition", "id": "c3"}))
    responses.add(responses.GET, f"{FHIR}/Condition", json=bundle({"resourceType": "Condition", "id": "c1"},
                                                                   next_url=page2))
    body = hook_request(prefetch={k: v for k, v in hook_request()["prefetch"].items() if k != "conditions"})
    result = resolve_prefetch(templates=PREFETCH, required=REQUIRED, body=body, settings=settings,
                              allowlist=FhirServerAllowlist(settings.allowed_fhir_servers))
    assert [e["resource"]["id"] for e in result.data["conditions"]["entry"]] == ["c1", "c2", "c3"]
    assert result.fetched == ("conditions",)
    assert len(responses.calls) == 3


# A next link repeats the search (the patient included) with its paging state.
PAGE_2 = f"patient={PATIENT_ID}&page=2"


@responses.activate
def test_paging_through_the_endpoint(client):
    serve_everything(responses)
    responses.replace(responses.GET, re.compile(rf"{re.escape(FHIR)}/Condition\?.*"),
                      json=bundle({"resourceType": "Condition", "id": "c1"}, next_url=f"{FHIR}/Condition?{PAGE_2}"))
    responses.add(responses.GET, f"{FHIR}/Condition?{PAGE_2}", json=bundle({"resourceType": "Condition", "id": "c2"}))
    resp = client.post(PV, json=no_prefetch_request())
    assert resp.status_code == 200
    assert any(c.request.url.endswith(f"/Condition?{PAGE_2}") for c in responses.calls)


@responses.activate
def test_too_many_pages_is_412(make_app):
    client = make_app(CDS_FHIR_MAX_PAGES="2").test_client()
    serve_everything(responses)
    responses.replace(responses.GET, re.compile(rf"{re.escape(FHIR)}/Condition\?.*"),
                      json=bundle(next_url=f"{FHIR}/Condition?patient={PATIENT_ID}&page=n"))
    resp = client.post(PV, json=no_prefetch_request())
    assert resp.status_code == 412
    assert "conditions" in resp.get_json()["details"]["missing"]


@responses.activate
def test_next_link_to_another_host_is_not_followed(client):
    serve_everything(responses)
    responses.replace(responses.GET, re.compile(rf"{re.escape(FHIR)}/Condition\?.*"),
                      json=bundle(next_url="https://evil.example.com/steal?page=2"))
    resp = client.post(PV, json=no_prefetch_request())
    assert resp.status_code == 412
    assert not any("evil.example.com" in c.request.url for c in responses.calls)


@responses.activate
def test_timeout_is_retried_then_412_naming_the_missing_data(make_app):
    client = make_app(CDS_FHIR_RETRIES="2").test_client()
    serve_everything(responses)
    responses.replace(responses.GET, f"{FHIR}/Patient/{PATIENT_ID}", body=requests.exceptions.ReadTimeout())
    resp = client.post(PV, json=no_prefetch_request())
    assert resp.status_code == 412
    body = resp.get_json()
    assert body["error"] == "prefetch_unavailable"
    assert body["details"]["missing"] == ["patient"]
    assert "did not answer in time" in body["details"]["failed"]["patient"]
    assert "in time" in body["message"]
    # One try and two retries, then it stops; the other keys were each read once.
    assert sum(c.request.url.endswith(f"/Patient/{PATIENT_ID}") for c in responses.calls) == 3
    assert len(responses.calls) == 3 + len(PREFETCH) - 1


@responses.activate
def test_server_error_is_retried_then_412(make_app):
    client = make_app(CDS_FHIR_RETRIES="1").test_client()
    serve_everything(responses)
    responses.replace(responses.GET, re.compile(rf"{re.escape(FHIR)}/MedicationRequest\?.*"), status=503, json={})
    resp = client.post(PV, json=no_prefetch_request())
    assert resp.status_code == 412
    assert resp.get_json()["details"]["missing"] == ["medicationRequests"]
    assert sum("MedicationRequest?" in c.request.url for c in responses.calls) == 2


@responses.activate
def test_transient_error_then_success_is_200(client):
    serve_everything(responses)
    responses.replace(responses.GET, f"{FHIR}/Patient/{PATIENT_ID}", status=502, json={})
    responses.add(responses.GET, f"{FHIR}/Patient/{PATIENT_ID}", json=patient())
    resp = client.post(PV, json=no_prefetch_request())
    assert resp.status_code == 200, resp.get_data(as_text=True)


@responses.activate
def test_unauthorized_from_fhir_server_is_412_without_retries(client):
    responses.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/.*"), status=401, json={})
    resp = client.post(PV, json=no_prefetch_request())
    assert resp.status_code == 412
    assert "refused the access token" in resp.get_json()["message"]
    assert set(resp.get_json()["details"]["failed"]) == set(PREFETCH)
    assert "secret-token" not in resp.get_data(as_text=True)
    assert len(responses.calls) == len(PREFETCH)  # each key once, none retried


@responses.activate
def test_server_not_on_the_allowlist_is_412_without_any_call(client):
    body = hook_request(prefetch={}, token="secret", fhir_server="https://other.example.net/fhir")
    resp = client.post(PV, json=body)
    assert resp.status_code == 412
    assert "allowlist" in resp.get_json()["message"]
    assert len(responses.calls) == 0


@responses.activate
def test_missing_prefetch_without_fhir_server_is_412(client):
    resp = client.post(PV, json=hook_request(prefetch={}, fhir_server=None))
    assert resp.status_code == 412
    assert set(resp.get_json()["details"]["missing"]) == set(REQUIRED)


@responses.activate
def test_optional_key_failure_does_not_block(client):
    serve_everything(responses)
    responses.replace(responses.GET, re.compile(rf"{re.escape(FHIR)}/MedicationStatement\?.*"), status=400, json={})
    resp = client.post(PV, json=no_prefetch_request())
    assert resp.status_code == 200, resp.get_data(as_text=True)


@responses.activate
def test_redirect_within_the_server_is_followed_and_off_server_refused(client):
    serve_everything(responses)
    responses.replace(responses.GET, f"{FHIR}/Patient/{PATIENT_ID}", status=302,
                      headers={"Location": f"{FHIR}/Patient/{PATIENT_ID}/_history/1"})
    responses.add(responses.GET, f"{FHIR}/Patient/{PATIENT_ID}/_history/1", json=patient())
    assert client.post(PV, json=no_prefetch_request()).status_code == 200

    responses.replace(responses.GET, f"{FHIR}/Patient/{PATIENT_ID}", status=302,
                      headers={"Location": "http://169.254.169.254/latest/meta-data"})
    resp = client.post(PV, json=no_prefetch_request())
    assert resp.status_code == 412
    assert not any("169.254" in c.request.url for c in responses.calls)


@responses.activate
def test_patient_not_found_is_412(client):
    serve_everything(responses, patient_status=404)
    resp = client.post(PV, json=no_prefetch_request())
    assert resp.status_code == 412
    assert "patient" in resp.get_json()["details"]["missing"]


@responses.activate
def test_non_fhir_answer_is_412(client):
    serve_everything(responses)
    responses.replace(responses.GET, f"{FHIR}/Patient/{PATIENT_ID}", body="<html>login</html>", status=200)
    resp = client.post(PV, json=no_prefetch_request())
    assert resp.status_code == 412


@pytest.mark.parametrize("count,status", [(5, 200), (6, 413)])
def test_prefetch_resource_limit(make_app, count, status):
    client = make_app(CDS_MAX_PREFETCH_RESOURCES="6").test_client()
    body = hook_request()
    body["prefetch"]["conditions"] = bundle(*[{"resourceType": "Condition", "id": str(i)} for i in range(count)])
    resp = client.post(PV, json=body)
    assert resp.status_code == status


def _observations(count, start=0):
    return [{"resourceType": "Observation", "id": f"o{i}", "status": "final",
             "subject": {"reference": f"Patient/{PATIENT_ID}"},
             "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
             "effectiveDateTime": "2024-01-01", "valueQuantity": {"value": 70}} for i in range(start, start + count)]


def _nested(resources, depth=1):
    """A searchset whose one entry is a Bundle holding `resources` (within `depth` Bundles)."""
    inner = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    for _ in range(depth - 1):
        inner = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": inner}]}
    return bundle(inner)


@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("count,status", [(5, 200), (40, 413)])
def test_prefetch_resource_limit_counts_bundles_within_bundles(make_app, depth, count, status):
    """Review (bind8 L4): only top-level entries were counted, and the record reads a Bundle in
    an entry as one of its own: 60,000 nested Observations passed a limit of 20,000."""
    client = make_app(CDS_MAX_PREFETCH_RESOURCES="20").test_client()
    body = hook_request()
    body["prefetch"]["observations"] = _nested(_observations(count), depth)
    resp = client.post(PV, json=body)
    assert resp.status_code == status, resp.get_data(as_text=True)
    if status == 413:
        assert resp.get_json()["error"] == "too_much_prefetch_data"


@pytest.mark.parametrize("first", [{"resource": {"resourceType": "Observation", "id": "top"}},  # the C check
                                   {"fullUrl": "urn:uuid:no-resource"}, "not an entry"])    # the walk
def test_a_nested_bundle_after_other_entries_is_counted(make_app, first):
    """The nested Bundle is the last entry, after an ordinary one (found without a Python walk)
    or an odd one (walked): counted either way; 15 beside it are the control."""
    client = make_app(CDS_MAX_PREFETCH_RESOURCES="20").test_client()
    for count, status in ((15, 200), (40, 413)):
        body = hook_request()
        nested = _nested(_observations(count))
        nested["entry"].insert(0, first)
        body["prefetch"]["observations"] = nested
        resp = client.post(PV, json=body)
        assert resp.status_code == status, (first, count, resp.get_data(as_text=True)[:300])


@pytest.mark.parametrize("count,status", [(900, 200), (7000, 413)])
def test_nested_bundles_are_counted_in_a_long_body_too(make_app, count, status):
    """Over 1 MB, Bundle entries are kept as text until read (fhir.deferred): a nested Bundle
    there must still be counted, so such a Bundle is parsed at once. 7000 nested Observations
    (about 1.8 MB, one top-level entry) pass no limit of 5000; the control, 900 of them beside
    4000 Conditions (1 MB, deferred), does."""
    client = make_app(CDS_MAX_PREFETCH_RESOURCES="5000").test_client()
    body = hook_request()
    body["prefetch"]["observations"] = _nested(_observations(count))
    body["prefetch"]["conditions"]["entry"] = [{"resource": {"resourceType": "Condition", "id": f"c{i}",
                                                             "note": [{"text": "x" * 200}]}} for i in range(4000)]
    body["prefetch"] = body.pop("prefetch")  # the last member: read apart, entries deferred
    raw = json.dumps(body).encode()
    assert len(raw) > (1 << 20)
    resp = client.post(PV, data=raw, content_type="application/json")
    assert resp.status_code == status, resp.get_data(as_text=True)[:300]


# --- null: "no data" for a search, data not had for the read of the context patient (bind8 M2) ---

def _with_null(key):
    prefetch = hook_request()["prefetch"]
    prefetch[key] = None
    return prefetch


@pytest.mark.parametrize("hook", ["patient-view", "order-sign"])
def test_patient_sent_as_null_without_fhir_server_is_412_naming_it(client, hook):
    """Review (bind8 M2): `"patient": null` answered 200 with no cards (no age, no sex: every
    rule quiet). The context patient always exists, so null is data not had: 412, as left out."""
    resp = client.post(f"/cds-services/osteoporosis-{hook}",
                       json=hook_request(hook, prefetch=_with_null("patient"), fhir_server=None))
    assert resp.status_code == 412, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["details"]["missing"] == ["patient"] and "null" in body["details"]["failed"]["patient"]


@responses.activate
def test_patient_sent_as_null_is_fetched_from_fhir_server(client):
    responses.add(responses.GET, f"{FHIR}/Patient/{PATIENT_ID}", json=patient())
    resp = client.post(PV, json=hook_request(prefetch=_with_null("patient"), token="secret-token"))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert [c.request.url for c in responses.calls] == [f"{FHIR}/Patient/{PATIENT_ID}"]
    sent = client.post(PV, json=hook_request()).get_json()["cards"]
    assert [c["source"]["topic"]["code"] for c in resp.get_json()["cards"]] == \
        [c["source"]["topic"]["code"] for c in sent] != []


@responses.activate
@pytest.mark.parametrize("key", sorted(k for k in PREFETCH if k != "patient"))
def test_a_search_sent_as_null_is_no_data_and_not_fetched(client, key):
    """The control: for a search, null is CDS Hooks' "nothing found" (as an empty Bundle), not
    "not prefetched": nothing is fetched, whether or not the rules need the key."""
    resp = client.post(PV, json=hook_request(prefetch=_with_null(key), token="secret-token"))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert len(responses.calls) == 0
