"""The hook endpoints through the Flask test client: validation and error shapes."""

from __future__ import annotations

import json

import pytest
import responses

from requests_for_tests import PATIENT_ID, SERVICE_FOR, draft_bundle, hook_request

HOOKS = list(SERVICE_FOR)


def post(client, service_id, body, **kw):
    return client.post(f"/cds-services/{service_id}", json=body, **kw)


def assert_json_error(resp, status, code=None):
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.is_json, resp.get_data(as_text=True)
    body = resp.get_json()
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["message"], str) and body["message"]
    if code:
        assert body["error"] == code
    return body


def test_discovery_lists_three_services_one_per_hook(client):
    resp = client.get("/cds-services")
    assert resp.status_code == 200
    services = resp.get_json()["services"]
    assert sorted(s["hook"] for s in services) == sorted(HOOKS)
    for service in services:
        assert service["id"] == SERVICE_FOR[service["hook"]]
        assert service["title"] and service["description"]
        prefetch = service["prefetch"]
        assert prefetch["patient"] == "Patient/{{context.patientId}}"
        for key in ("observations", "conditions", "medicationRequests",
                    "medicationAdministrations", "medicationStatements"):
            assert "{{context.patientId}}" in prefetch[key]
        # DXA, FRAX and lab codes are asked for by LOINC code.
        for loinc in ("38267-1", "90265-0", "69405-9", "17861-6", "62292-8"):
            assert f"http://loinc.org|{loinc}" in prefetch["observations"]
        # No rule needs the user: asking for it would make the sandbox fail.
        assert not any("Practitioner" in query or "userId" in query for query in prefetch.values())


@pytest.mark.parametrize("hook", HOOKS)
def test_each_hook_answers_cards(client, hook):
    resp = post(client, SERVICE_FOR[hook], hook_request(hook))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert isinstance(resp.get_json()["cards"], list)


def test_unknown_service_is_404_json(client):
    body = assert_json_error(post(client, "no-such-service", hook_request()), 404, "unknown_service")
    assert "no-such-service" in body["message"]


def test_unknown_path_is_404_json_not_html(client):
    resp = client.get("/nothing-here")
    assert_json_error(resp, 404)


@pytest.mark.parametrize("path", ["/cds-services//osteoporosis-patient-view", "/cds-services/osteoporosis-patient-view//"])
def test_a_double_slash_is_404_json_not_an_html_redirect(client, path):
    """Werkzeug merges slashes with an HTML 308 whose Location is built from the
    Host header: an EHR with a mistyped URL gets a JSON 404 like any other path."""
    resp = client.post(path, json=hook_request(), headers={"Host": "evil.example"})
    assert_json_error(resp, 404)
    assert "Location" not in resp.headers


def test_wrong_method_is_405_json(client):
    resp = client.get("/cds-services/osteoporosis-patient-view")
    assert_json_error(resp, 405, "method_not_allowed")
    assert "POST" in resp.headers["Allow"]
    assert_json_error(client.delete("/cds-services"), 405)


def test_wrong_content_type_is_415(client):
    resp = client.post("/cds-services/osteoporosis-patient-view", data=json.dumps(hook_request()),
                       content_type="text/plain")
    assert_json_error(resp, 415, "unsupported_media_type")
    resp = client.post("/cds-services/osteoporosis-patient-view", data=json.dumps(hook_request()))
    assert_json_error(resp, 415)


def test_fhir_json_media_type_is_accepted(client):
    resp = client.post("/cds-services/osteoporosis-patient-view", data=json.dumps(hook_request()),
                       content_type="application/fhir+json; charset=utf-8")
    assert resp.status_code == 200


@pytest.mark.parametrize("raw", [b"{not json", b"", b"   ", b"\xff\xfe{}", b"[1, 2]", b"\"text\"", b"null"])
def test_body_not_a_json_object_is_400(client, raw):
    resp = client.post("/cds-services/osteoporosis-patient-view", data=raw, content_type="application/json")
    assert_json_error(resp, 400, "invalid_json")


def test_body_too_large_is_413_json(make_app):
    client = make_app(CDS_MAX_BODY_BYTES="2000").test_client()
    body = hook_request()
    body["prefetch"]["patient"]["text"] = {"status": "generated", "div": "<div>" + "x" * 5000 + "</div>"}
    assert_json_error(post(client, "osteoporosis-patient-view", body), 413)


@pytest.mark.parametrize("field", ["hookInstance", "hook", "context"])
def test_missing_top_level_field_is_400_naming_it(client, field):
    body = hook_request()
    del body[field]
    err = assert_json_error(post(client, "osteoporosis-patient-view", body), 400)
    assert field in err["message"]


@pytest.mark.parametrize("field", ["patientId", "userId"])
def test_missing_context_field_is_400_naming_it(client, field):
    body = hook_request()
    del body["context"][field]
    err = assert_json_error(post(client, "osteoporosis-patient-view", body), 400, "invalid_request")
    assert field in err["message"]


def test_hook_must_match_the_service(client):
    err = assert_json_error(post(client, "osteoporosis-patient-view", hook_request("order-sign")), 400, "wrong_hook")
    assert "patient-view" in err["message"]


def test_order_select_requires_selections_and_draft_orders(client):
    body = hook_request("order-select")
    del body["context"]["selections"]
    err = assert_json_error(post(client, "osteoporosis-order-select", body), 400)
    assert "selections" in err["message"]
    body = hook_request("order-select")
    del body["context"]["draftOrders"]
    err = assert_json_error(post(client, "osteoporosis-order-select", body), 400)
    assert "draftOrders" in err["message"]


def test_order_sign_requires_draft_orders(client):
    body = hook_request("order-sign")
    del body["context"]["draftOrders"]
    assert_json_error(post(client, "osteoporosis-order-sign", body), 400)


def test_fhir_authorization_requires_fhir_server(client):
    body = hook_request(token="abc", fhir_server=None)
    err = assert_json_error(post(client, "osteoporosis-patient-view", body), 400)
    assert "fhirServer" in err["message"]


def test_fhir_authorization_shape_is_checked(client):
    body = hook_request(token="abc")
    del body["fhirAuthorization"]["access_token"]
    assert_json_error(post(client, "osteoporosis-patient-view", body), 400)


@responses.activate
@pytest.mark.parametrize("token", ["tok\u20acn", "a\r\nX-Injected: 1", "a\u0000b", " ", "abc\n", "a b", "a=b"])
def test_an_access_token_that_is_no_bearer_token_is_400_naming_it(client, token):
    """Review (bind8 L10): a token that cannot be an RFC 6750 b64token ("tok\u20acn", a CR LF that
    would split the Authorization header, a NUL, a space) was sent on, or read as a network
    failure (a misleading 412). It is a 400 naming the field, the token never quoted, before
    any request to the FHIR server."""
    body = hook_request(prefetch={}, token=token)
    err = assert_json_error(post(client, "osteoporosis-patient-view", body), 400, "invalid_request")
    assert err["details"] == [err["message"].split("not valid: ", 1)[1]]
    assert err["message"].startswith("the patient-view request is not valid: fhirAuthorization.access_token: ")
    assert (token.strip() == "" or token not in err["message"]) and len(responses.calls) == 0


@responses.activate
def test_a_bearer_token_is_sent_as_given(client):
    """The control: a JWT-shaped token (base64url, dots, '=' padding) passes and is sent."""
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln-_~+/=="
    responses.add(responses.GET, f"https://fhir.example.org/r4/Patient/{PATIENT_ID}",
                  json={"resourceType": "Patient", "id": PATIENT_ID, "gender": "female", "birthDate": "1950-03-04"})
    body = hook_request(token=token)
    del body["prefetch"]["patient"]
    resp = post(client, "osteoporosis-patient-view", body)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert [c.request.headers["Authorization"] for c in responses.calls] == [f"Bearer {token}"]


@pytest.mark.parametrize("hook", ["patient-view", "order-select", "order-sign"])
def test_a_token_scoped_to_another_patient_is_400(client, hook):
    """Review (bind8 L10): fhirAuthorization.patient is the patient the token is scoped to (CDS
    Hooks cds-r-2); another one than context.patientId would fetch that patient's data."""
    body = hook_request(hook, token="abc")
    body["fhirAuthorization"]["patient"] = PATIENT_ID
    assert post(client, SERVICE_FOR[hook], body).status_code == 200  # the control: the same patient
    body["fhirAuthorization"]["patient"] = "someone-else"
    body["hookInstance"] = "0a2d1f7e-0000-4000-8000-00000000000b"
    err = assert_json_error(post(client, SERVICE_FOR[hook], body), 400, "invalid_request")
    assert err["details"] == ["fhirAuthorization.patient"] and "another patient" in err["message"]


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_sandbox_draft_orders_without_type_and_without_medication_are_accepted(client, hook):
    body = hook_request(hook)
    body["context"]["draftOrders"] = draft_bundle(with_medication=False)
    assert "type" not in body["context"]["draftOrders"]
    resp = post(client, SERVICE_FOR[hook], body)
    assert resp.status_code == 200, resp.get_data(as_text=True)


def test_too_many_draft_orders_is_413(make_app):
    client = make_app(CDS_MAX_DRAFT_ORDERS="3").test_client()
    body = hook_request("order-sign")
    entry = body["context"]["draftOrders"]["entry"][0]
    body["context"]["draftOrders"]["entry"] = [entry] * 4
    assert_json_error(post(client, "osteoporosis-order-sign", body), 413, "too_many_draft_orders")


def test_prefetch_value_must_be_a_resource_or_null(client):
    body = hook_request()
    body["prefetch"]["conditions"] = ["not", "a", "resource"]
    err = assert_json_error(post(client, "osteoporosis-patient-view", body), 400)
    assert "conditions" in err["message"]


def test_prefetch_patient_for_another_patient_is_refused(client):
    body = hook_request()
    body["prefetch"]["patient"]["id"] = "someone-else"
    err = assert_json_error(post(client, "osteoporosis-patient-view", body), 400, "invalid_prefetch")
    assert "patientId" in err["message"]


@responses.activate
def test_null_and_empty_prefetch_mean_no_data_and_cause_no_fetch(client):
    body = hook_request()
    for key in ("observations", "conditions", "medicationRequests", "medicationAdministrations",
                "medicationStatements", "procedures", "serviceRequests", "encounters"):
        body["prefetch"][key] = None
    body["prefetch"]["observations"] = {"resourceType": "Bundle", "type": "searchset"}
    resp = post(client, "osteoporosis-patient-view", body)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert len(responses.calls) == 0


def test_patient_id_mismatch_message_never_echoes_patient_data(client):
    body = hook_request()
    body["prefetch"]["patient"]["id"] = "other"
    body["prefetch"]["patient"]["name"] = [{"family": "Sentinelname"}]
    text = post(client, "osteoporosis-patient-view", body).get_data(as_text=True)
    assert "Sentinelname" not in text
    assert PATIENT_ID not in text


def test_discovery_answers_with_a_trailing_slash_too(client):
    resp = client.get("/cds-services/")
    assert resp.status_code == 200
    assert len(resp.get_json()["services"]) == 3
