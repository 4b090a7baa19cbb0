"""What the service fetches is held to the same rule as what it is sent: the
Patient read is this patient, ids cannot change the path, and URLs that
cannot be parsed (in fhirServer, a redirect, a `next` link) are refusals made
before any contact with them."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import responses

from cds_service.fhir.client import FhirClient, FhirError
from cds_service.fhir.prefetch import render_template
from cds_service.services.prefetch_templates import PREFETCH
from requests_for_tests import FHIR, PATIENT_ID, SERVICE_FOR, empty_bundle, hook_request, patient

PV = "/cds-services/osteoporosis-patient-view"
ANY = re.compile(r".*")


def fetching(**kw):
    """A request with nothing prefetched, so every key is fetched."""
    return hook_request(prefetch={}, token="t", **kw)


def serve(rsps, patient_body=None, **replace):
    """Answer every prefetch query; `replace` maps a path prefix to (status, json, headers)."""
    for prefix, (status, body, headers) in replace.items():
        rsps.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/{prefix}.*"), status=status, json=body,
                 headers=headers)
    rsps.add(responses.GET, f"{FHIR}/Patient/{PATIENT_ID}", json=patient_body or patient())
    rsps.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/[A-Za-z]+\?.*"), json=empty_bundle())


def called(rsps):
    return [c.request.url for c in rsps.calls]


# --- the Patient read must be this patient -------------------------------------

@pytest.mark.parametrize("body,why", [
    (patient("someone-else"), "another id"),
    ({"resourceType": "Patient", "gender": "female"}, "another id"),  # no id at all
    ({"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": patient()}]}, "sent a Bundle"),
    ({"resourceType": "Practitioner", "id": PATIENT_ID}, "sent a Practitioner"),
])
def test_a_read_answered_with_another_resource_is_412_naming_the_key(client, body, why):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        serve(rsps, patient_body=body)
        resp = client.post(PV, json=fetching())
    assert resp.status_code == 412, resp.get_data(as_text=True)
    details = resp.get_json()["details"]
    assert details["missing"] == ["patient"]
    assert why in details["failed"]["patient"]
    assert "someone-else" not in resp.get_data(as_text=True)


def test_the_right_patient_is_used(client):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        serve(rsps)
        assert client.post(PV, json=fetching()).status_code == 200


# --- ids of only dots ------------------------------------------------------------

@pytest.mark.parametrize("hook", ["patient-view", "order-select", "order-sign"])
@pytest.mark.parametrize("pid", [".", "..", "...", "....."])
def test_a_patient_id_of_only_dots_is_400_and_nothing_is_read(client, hook, pid):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, ANY, json=empty_bundle())
        resp = client.post(f"/cds-services/{SERVICE_FOR[hook]}",
                           json=hook_request(hook, prefetch={}, token="t", patientId=pid))
        assert called(rsps) == []
    assert resp.status_code == 400
    body = resp.get_json()
    assert body["details"][0].startswith("context.patientId: must be a FHIR id")
    assert "not only dots" in body["message"]


@pytest.mark.parametrize("pid", ["pat.1", ".hidden", "a..b", "x."])
def test_ids_with_dots_among_other_characters_are_read_as_they_are(client, pid):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        serve(rsps)
        rsps.add(responses.GET, f"{FHIR}/Patient/{pid}", json=patient(pid))
        resp = client.post(PV, json=fetching(patientId=pid))
        urls = called(rsps)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert f"{FHIR}/Patient/{pid}" in urls
    assert f"{FHIR}/Patient/" not in urls and f"{FHIR}/" not in urls


@pytest.mark.parametrize("value", [".", "..", "..."])
def test_no_template_is_filled_with_a_dot_segment(value):
    # Whatever context value a template names: a value of only dots is never filled in.
    for template in [*PREFETCH.values(), "Practitioner/{{context.userId}}", "Encounter/{{context.encounterId}}"]:
        assert render_template(template, {"patientId": value, "userId": value, "encounterId": value}) is None


def test_the_client_never_resolves_a_path_against_the_base():
    from cds_service.fhir.allowlist import FhirServerAllowlist

    client = FhirClient(FHIR, access_token=None, allowlist=FhirServerAllowlist((FHIR,)), timeout=1,
                        total_timeout=1, retries=0, max_pages=1)
    assert client.url_for("Patient/pat-1") == f"{FHIR}/Patient/pat-1"
    assert client.url_for("Condition?patient=a%2Fb") == f"{FHIR}/Condition?patient=a%2Fb"
    for relative in ["Patient/..", "Patient/.", "Patient/", "../Patient/x", "Patient//x", "/Patient/x"]:
        with pytest.raises(FhirError):
            client.url_for(relative)


# --- malformed URLs: fhirServer (400), redirects and next links (412) --------------

MALFORMED = [
    "https://[fhir.example.org]/r4",
    "https://[::1/r4",
    "https://fhir.example.org]/r4",
    "https://[v1.fhir]/r4",
    "https://[::1]x/r4",
    "https://fhir.example.org:99999/r4",
    "https://fhir.example.org:-1/r4",
]


@pytest.mark.parametrize("server", MALFORMED)
@pytest.mark.parametrize("prefetch", [{}, None], ids=["nothing-sent", "all-sent"])
def test_a_malformed_fhir_server_is_400_naming_it_without_any_call(client, server, prefetch):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, ANY, json=empty_bundle())
        resp = client.post(PV, json=hook_request(prefetch=prefetch, fhir_server=server, token="t"))
        assert called(rsps) == []
    assert resp.status_code == 400, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["error"] == "invalid_request"
    assert body["details"][0].startswith("fhirServer: ")


def test_a_fhir_server_over_2048_characters_is_400(client):
    server = FHIR + "/" + "a" * 2100
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, ANY, json=empty_bundle())
        resp = client.post(PV, json=hook_request(prefetch={}, fhir_server=server, token="t"))
        assert called(rsps) == []
    assert resp.status_code == 400
    assert resp.get_json()["details"][0] == f"fhirServer: must be at most 2048 characters, has {len(server)}"


LOCATIONS = [*MALFORMED, "https://[fhir.example.org]/r4/Patient/pat-1", "//[bad/x", "http://[::1]:80x/"]


@pytest.mark.parametrize("location", LOCATIONS)
def test_a_redirect_to_a_malformed_url_is_412_and_not_followed(client, location):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, f"{FHIR}/Patient/{PATIENT_ID}", status=302, headers={"Location": location})
        serve(rsps)
        resp = client.post(PV, json=fetching())
        patient_calls = [u for u in called(rsps) if "/Patient/" in u]
        others = [u for u in called(rsps) if "/Patient/" not in u]
    assert resp.status_code == 412, resp.get_data(as_text=True)
    assert resp.get_json()["details"]["missing"] == ["patient"]
    assert resp.get_json()["details"]["failed"]["patient"].startswith("a redirect is not a well-formed URL")
    assert patient_calls == [f"{FHIR}/Patient/{PATIENT_ID}"]  # the redirect itself was not followed
    assert len(others) == len(PREFETCH) - 1 and all(u.startswith(FHIR + "/") for u in others)


@pytest.mark.parametrize("next_url", [*LOCATIONS, 42, {"url": "x"}, ["x"]])
def test_a_malformed_next_link_is_412_and_not_followed(client, next_url):
    page = {**empty_bundle(), "link": [{"relation": "next", "url": next_url}]}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/Condition\?.*"), json=page)
        serve(rsps)
        resp = client.post(PV, json=fetching())
        condition_calls = [u for u in called(rsps) if "/Condition" in u]
    assert resp.status_code == 412, resp.get_data(as_text=True)
    assert resp.get_json()["details"]["missing"] == ["conditions"]
    assert resp.get_json()["details"]["failed"]["conditions"].startswith("a Bundle next link is not")
    assert len(condition_calls) == 1


@pytest.mark.parametrize("entry", [{"resource": {}}, "x", {"a": 1}])
def test_a_page_whose_entry_is_not_an_array_is_412(client, entry):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/Condition\?.*"),
                 json={"resourceType": "Bundle", "type": "searchset", "entry": entry})
        serve(rsps)
        resp = client.post(PV, json=fetching())
    assert resp.status_code == 412
    assert resp.get_json()["details"]["failed"] == {"conditions": "a Bundle's entry is not an array"}


# --- fetched resources bind as sent ones do (fhir.patient_binding) -------------

def _t_score(oid: str, value: float, ref: str, **extra) -> dict:
    return {"resourceType": "Observation", "id": oid, "status": "final", "subject": {"reference": ref},
            "code": {"coding": [{"system": "http://loinc.org", "code": "38267-1"}]},
            "effectiveDateTime": (dt.date.today() - dt.timedelta(days=30)).isoformat(), "valueQuantity": {"value": value, "unit": "{T-score}"}, **extra}


def _fetched_cards(client, *extra: dict) -> list:
    """patient-view with every key fetched; the Observation searches answer a T-score -2.6
    of the patient and `extra`."""
    own = _t_score("own-t", -2.6, f"Patient/{PATIENT_ID}")
    bundle = {"resourceType": "Bundle", "type": "searchset",
              "entry": [{"fullUrl": f"{FHIR}/Observation/{r['id']}", "resource": r} for r in (own, *extra)]}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        serve(rsps, Observation=(200, bundle, {}))
        resp = client.post(PV, json=fetching())
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return [(c["source"]["topic"]["code"], c["summary"], c.get("detail", "")) for c in resp.get_json()["cards"]]


@pytest.mark.parametrize("ref,extra", [
    (f"Patient/{PATIENT_ID}/_history/../../Patient/someone-else", {}),
    (f"{FHIR}/Patient/{PATIENT_ID}/_history/../../someone-else", {}),
    (f"https://other.example.org/r4/Patient/{PATIENT_ID}", {}),
    (f"Patient/{PATIENT_ID}", {"focus": [{"reference": "Patient/someone-else"}]}),
])
def test_a_fetched_resource_that_does_not_name_the_patient_alone_is_ignored(client, ref, extra):
    base = _fetched_cards(client)
    cards = _fetched_cards(client, _t_score("later-t", -3.6, ref, **extra))
    assert cards == base and "-3.6" not in str(cards)


@pytest.mark.parametrize("ref", [f"Patient/{PATIENT_ID}/_history/4", f"{FHIR}/Patient/{PATIENT_ID}/_history/4",
                                 f"{FHIR}/Patient/{PATIENT_ID}"])
def test_a_fetched_resource_naming_the_patient_is_read(client, ref):
    base = _fetched_cards(client)
    cards = _fetched_cards(client, _t_score("later-t", -3.6, ref))
    assert cards != base and "-3.6" in str(cards)


def test_another_patients_fetched_resource_with_the_same_id_never_hides_the_patients_own(client):
    own_only = _fetched_cards(client, _t_score("later-t", -3.6, f"Patient/{PATIENT_ID}"))
    both = _fetched_cards(client, _t_score("later-t", -3.9, "Patient/someone-else"),
                          _t_score("later-t", -3.6, f"Patient/{PATIENT_ID}"))
    assert both == own_only and "-3.9" not in str(both)
