"""Known robustness traps, each through the real app: the answer is a JSON
4xx (or a 200 where the input is legitimate), never a 500, and a slow FHIR
server cannot hold a hook call beyond its time budget."""

from __future__ import annotations

import gzip
import io
import json
import re
import time

import pytest
import requests
import responses

from cds_service.services.prefetch_templates import PREFETCH

from requests_for_tests import FHIR, PATIENT_ID, SERVICE_FOR, hook_request, patient

PV = "/cds-services/osteoporosis-patient-view"
FEEDBACK = PV + "/feedback"
ENDPOINTS = [f"/cds-services/{sid}" for sid in SERVICE_FOR.values()] + [FEEDBACK]


def assert_json_error(resp, status: int | tuple[int, ...]) -> dict:
    statuses = status if isinstance(status, tuple) else (status,)
    assert resp.status_code in statuses, (resp.status_code, resp.get_data(as_text=True)[:300])
    assert resp.mimetype == "application/json"
    body = resp.get_json()
    assert isinstance(body["error"], str) and isinstance(body["message"], str)
    return body


def post_raw(client, path, data, **headers):
    return client.post(path, data=data, content_type=headers.pop("content_type", "application/json"),
                       headers=headers)


def valid_body() -> str:
    return json.dumps(hook_request())


# --- JSON parser traps ------------------------------------------------------

@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("raw", [
    "[" * 100_000 + "]" * 100_000,                     # RecursionError inside json
    '{"a":' * 100_000 + "1" + "}" * 100_000,
    '{"hook": ' + "[" * 150 + "]" * 150 + "}",          # parses, but deeper than the limit
], ids=["arrays-100k", "objects-100k", "arrays-150"])
def test_deeply_nested_body_is_400_not_500(client, path, raw):
    body = assert_json_error(post_raw(client, path, raw), 400)
    assert "nest" in body["message"]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
def test_non_finite_numbers_are_not_json(client, constant):
    # Inside a resource, where no schema would catch it: a T-score of NaN must not reach the rules.
    body = hook_request()
    body["prefetch"]["observations"]["entry"] = [{"resource": {
        "resourceType": "Observation", "id": "o1", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "38267-1"}]},
        "effectiveDateTime": "2025-01-01", "valueQuantity": {"value": "PLACEHOLDER"}}}]
    raw = json.dumps(body).replace('"PLACEHOLDER"', constant)
    assert constant in raw
    body = assert_json_error(post_raw(client, PV, raw), 400)
    assert body["error"] == "invalid_json"


def test_duplicate_member_names_are_refused(client):
    # A validator could check the first "hook" while something else reads the second.
    raw = valid_body()[:-1] + ', "hook": "order-sign"}'
    body = assert_json_error(post_raw(client, PV, raw), 400)
    assert "twice" in body["message"]
    raw = valid_body().replace('"context": {', '"context": {"patientId": "other", ', 1)
    assert_json_error(post_raw(client, PV, raw), 400)


def test_an_unpaired_surrogate_is_refused_not_a_database_error(client):
    # "\ud800" is valid JSON syntax; SQLite and PostgreSQL cannot store it.
    feedback = ('{"feedback": [{"card": "7f6a2b8e-54b0-4b1c-8d0e-3c9f1e2a6b71", "outcome": "overridden",'
                ' "outcomeTimestamp": "2025-06-01T10:00:00Z",'
                ' "overrideReason": {"userComment": "bad \\ud800 text"}}]}')
    body = assert_json_error(post_raw(client, FEEDBACK, feedback), 400)
    assert "surrogate" in body["message"]
    raw = valid_body().replace('"hook": "patient-view"', '"hook": "patient-view", "\\udc00": 1')
    assert_json_error(post_raw(client, PV, raw), 400)
    # A proper pair (an emoji written as escapes) is text and fine.
    ok = valid_body().replace('"userId": "Practitioner/COREPRACTITIONER1"', '"userId": "Practitioner/\\ud83d\\udca5"')
    assert post_raw(client, PV, ok).status_code == 200


def test_huge_numbers(client):
    too_many_digits = valid_body().replace('"userId": "Practitioner/COREPRACTITIONER1"', '"userId": 1' + "0" * 5000)
    assert_json_error(post_raw(client, PV, too_many_digits), 400)
    # A big but parseable number inside a resource is legitimate JSON: read as unknown, not a crash.
    body = hook_request()
    body["prefetch"]["observations"]["entry"] = [{"resource": {
        "resourceType": "Observation", "id": "o1", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "38267-1"}]},
        "effectiveDateTime": "2025-01-01", "valueQuantity": {"value": 10 ** 400}}}]
    resp = post_raw(client, PV, json.dumps(body))
    assert resp.status_code == 200, resp.get_data(as_text=True)


def test_a_10_mb_hook_instance_within_the_size_limit_is_refused(client, app):
    body = hook_request()
    body["hookInstance"] = "x" * 10_000_000
    raw = json.dumps(body)
    assert len(raw) < app.config["MAX_CONTENT_LENGTH"]
    answer = assert_json_error(post_raw(client, PV, raw), 400)
    assert answer["message"].startswith("the patient-view request is not valid: hookInstance")
    assert len(json.dumps(answer)) < 2000  # the value is not echoed back


def test_body_over_the_limit_is_413(make_app):
    client = make_app(CDS_MAX_BODY_BYTES="1000").test_client()
    answer = assert_json_error(post_raw(client, PV, valid_body() + " " * 1000), 413)
    # Operator review 16: the answer names the limit, so the integrator knows what fits.
    assert answer["message"] == "request body too large: at most 1000 bytes (CDS_MAX_BODY_BYTES)"


# --- transport traps --------------------------------------------------------

def post_environ(client, data: bytes, **environ):
    env = {"CONTENT_TYPE": "application/json", "wsgi.input": io.BytesIO(data)}
    env.update(environ)
    return client.post(PV, environ_overrides=env)


def test_content_length_lies(make_app):
    client = make_app(CDS_MAX_BODY_BYTES="100000").test_client()
    raw = valid_body().encode()
    assert post_environ(client, raw, CONTENT_LENGTH=str(len(raw))).status_code == 200  # the truth
    assert_json_error(post_environ(client, raw, CONTENT_LENGTH=str(len(raw) - 5)), 400)  # shorter: cut JSON
    assert_json_error(post_environ(client, raw, CONTENT_LENGTH=str(len(raw) + 100)), 400)  # longer: body ends early
    for nonsense in ("0", "-1", "abc", "1e3"):
        assert_json_error(post_environ(client, raw, CONTENT_LENGTH=nonsense), 400)
    assert_json_error(post_environ(client, raw, CONTENT_LENGTH="99999999999"), 413)  # refused before reading


def test_streamed_body_over_the_limit_is_413_not_cut(make_app):
    # Chunked transfer: no Content-Length; the server marks the input terminated (gunicorn does).
    client = make_app(CDS_MAX_BODY_BYTES="100000").test_client()
    small = valid_body().encode()
    assert post_environ(client, small, **{"wsgi.input_terminated": True}).status_code == 200
    big = valid_body().encode()[:-1] + b', "padding": "' + b"x" * 200_000 + b'"}'
    answer = assert_json_error(post_environ(client, big, **{"wsgi.input_terminated": True}), 413)
    assert answer["message"] == "request body too large: at most 100000 bytes (CDS_MAX_BODY_BYTES)"


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "gzip, identity"])
def test_compressed_bodies_are_415(client, encoding):
    raw = gzip.compress(valid_body().encode())
    body = assert_json_error(post_raw(client, PV, raw, **{"Content-Encoding": encoding}), 415)
    assert "Content-Encoding" in body["message"]


def test_identity_content_encoding_is_fine(client):
    assert post_raw(client, PV, valid_body(), **{"Content-Encoding": "identity"}).status_code == 200


def test_a_1_mb_authorization_header(client, tmp_path, make_app):
    header = "Bearer " + "a" * 1_000_000
    # Authentication off: the header is ignored (and not logged).
    assert post_raw(client, PV, valid_body(), Authorization=header).status_code == 200
    # Authentication on: refused cheaply, 401 JSON.
    issuers = tmp_path / "issuers.json"
    issuers.write_text(json.dumps({"https://ehr.example.org": {"jku": ["https://ehr.example.org/jwks.json"]}}))
    secured = make_app(CDS_AUTH_REQUIRED="true", CDS_TRUSTED_ISSUERS=str(issuers)).test_client()
    for path in ENDPOINTS + ["/cds-services"]:
        resp = secured.open(path, method="GET" if path == "/cds-services" else "POST", data=valid_body(),
                            content_type="application/json", headers={"Authorization": header})
        assert_json_error(resp, 401)


def test_query_strings_are_ignored(client):
    assert client.post(PV + "?x=1&hook=order-sign&fhirServer=https://evil.example", json=hook_request()).status_code == 200
    assert client.get("/cds-services?foo=bar").status_code == 200
    resp = client.post(FEEDBACK + "?a=%00", json={"feedback": [{
        "card": "7f6a2b8e-54b0-4b1c-8d0e-3c9f1e2a6b71", "outcome": "accepted",
        "outcomeTimestamp": "2025-06-01T10:00:00Z",
        "acceptedSuggestions": [{"id": "e56e1945-20b3-4393-8503-a1a20fd73152"}]}]})
    assert resp.status_code == 200


def route_paths(app) -> list[tuple[str, set[str]]]:
    out = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.replace("<service_id>", SERVICE_FOR["patient-view"]).replace("<card_id>", "C-EXERCISE")
        assert "<" not in path, path
        out.append((path, set(rule.methods or ())))
    return out


def test_head_and_options_on_every_route(app, client):
    routes = route_paths(app)
    assert len(routes) >= 6
    for path, methods in routes + [("/cds-services/no-such-service", set()), ("/nope", set())]:
        head = client.head(path)
        assert head.status_code < 500, (path, head.status_code)
        assert head.data == b""
        if "GET" in methods:
            # /admin/report is off (404) until CDS_REPORT_TOKEN is set.
            assert head.status_code == (404 if path == "/admin/report" else 200), path
        elif methods:
            assert_json_error(client.get(path), 405)  # HEAD itself has no body to check
            assert head.status_code == 405 and "POST" in head.headers["Allow"], path
        options = client.options(path)
        assert options.status_code < 500, (path, options.status_code)
        if methods:
            assert options.status_code == 200 and options.headers.get("Allow"), path
        preflight = client.options(path, headers={"Origin": "https://sandbox.cds-hooks.org",
                                                  "Access-Control-Request-Method": "POST"})
        assert preflight.status_code < 500, path


# --- a slow or hanging FHIR server -------------------------------------------

def hanging_server(rsps, hang_seconds: float):
    """Each request waits for the timeout the client asked for (at most
    `hang_seconds`), then times out, as a server that never answers would."""
    calls = []

    def callback(request):
        timeout = request.req_kwargs.get("timeout")
        read_timeout = timeout[1] if isinstance(timeout, tuple) else timeout
        calls.append(read_timeout)
        assert read_timeout is not None, "every FHIR request must carry a timeout"
        time.sleep(min(hang_seconds, read_timeout))
        if read_timeout < hang_seconds:
            raise requests.ReadTimeout("simulated: no answer in time")
        if request.url == f"{FHIR}/Patient/{PATIENT_ID}":
            return 200, {"Content-Type": "application/fhir+json"}, json.dumps(patient())
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(
            {"resourceType": "Bundle", "type": "searchset", "entry": []})

    rsps.add_callback(responses.GET, re.compile(re.escape(FHIR) + r"/.*"), callback=callback)
    return calls


@pytest.mark.parametrize("retries", ["0", "2"])
def test_a_hanging_fhir_server_is_bounded_by_the_total_budget(make_app, retries):
    budget = 0.6
    client = make_app(CDS_FHIR_TOTAL_TIMEOUT_SECONDS=str(budget), CDS_FHIR_TIMEOUT_SECONDS="5",
                      CDS_FHIR_RETRIES=retries).test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        calls = hanging_server(rsps, hang_seconds=30)
        started = time.monotonic()
        resp = client.post(PV, json=hook_request(prefetch={}, token="t"))
        elapsed = time.monotonic() - started
    body = assert_json_error(resp, 412)
    assert body["error"] == "prefetch_unavailable"
    assert calls and all(t <= budget + 0.01 for t in calls)  # no request may wait longer than the budget
    # Measured, with generous slack for a loaded CI machine: the budget bounds the
    # call, where one 30 s hang per request and per retry would not.
    assert elapsed < budget + 3, elapsed


def test_a_slow_fhir_server_within_the_budget_still_answers(make_app):
    client = make_app(CDS_FHIR_TOTAL_TIMEOUT_SECONDS="10", CDS_FHIR_RETRIES="0").test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        calls = hanging_server(rsps, hang_seconds=0.02)
        body = hook_request(prefetch={}, token="t")
        resp = client.post(PV, json=body)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert len(calls) == len(PREFETCH)  # every prefetch key fetched once


def test_slow_pages_stop_at_the_budget(make_app):
    # Each page answers slowly but in time and links to another page: the budget, not the
    # page count, ends it.
    budget = 0.6
    client = make_app(CDS_FHIR_TOTAL_TIMEOUT_SECONDS=str(budget), CDS_FHIR_MAX_PAGES="1000",
                      CDS_FHIR_RETRIES="0").test_client()
    counter = {"n": 0}

    def page(request):
        counter["n"] += 1
        time.sleep(0.05)
        return 200, {}, json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": [],
                                    "link": [{"relation": "next", "url": f"{FHIR}/Condition?patient={PATIENT_ID}&page={counter['n']}"}]})

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_callback(responses.GET, re.compile(re.escape(FHIR) + r"/.*"), callback=page)
        prefetch = hook_request()["prefetch"]
        del prefetch["conditions"]
        started = time.monotonic()
        resp = client.post(PV, json=hook_request(prefetch=prefetch))
        elapsed = time.monotonic() - started
    assert_json_error(resp, 412)
    assert "in time" in resp.get_json()["details"]["failed"]["conditions"]
    assert counter["n"] < 100
    assert elapsed < budget + 3, elapsed


def test_deep_nesting_inside_prefetched_data_is_harmless(client):
    """The tree check skips the prefetch (for speed): a deeply nested but
    parseable resource there must still never cause a 5xx."""
    deep: dict = {"url": "x"}
    for _ in range(300):
        deep = {"url": "x", "extension": [deep]}
    body = hook_request()
    body["prefetch"]["observations"]["entry"] = [{"resource": {
        "resourceType": "Observation", "id": "deep", "status": "final", "extension": [deep],
        "code": {"coding": [{"system": "http://loinc.org", "code": "38267-1"}]},
        "valueQuantity": {"value": -2.7}, "effectiveDateTime": "2025-01-01", "subject": {"reference": "Patient/pat-1"},
        "note": [{"text": "\ud800 lone surrogate in a prefetched note"}]}}]
    resp = client.post(PV, data=json.dumps(body), content_type="application/json")
    assert resp.status_code == 200, resp.get_data(as_text=True)
