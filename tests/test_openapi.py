"""The OpenAPI document: valid OpenAPI 3.1, schemas that compile, examples that
pass, and the request/response rules the web layer relies on."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from openapi_spec_validator.versions.shortcuts import get_spec_version

from cds_service.protocol import schemas
from cds_service.protocol.schemas import errors, load_openapi, validator

ROOT = Path(__file__).resolve().parents[1]
SERVICE_IDS = ("osteoporosis-patient-view", "osteoporosis-order-select", "osteoporosis-order-sign")

REQUIRED_SCHEMAS = (
    "PatientViewRequest", "OrderSelectRequest", "OrderSignRequest", "FeedbackRequest",
    "DiscoveryResponse", "CardsResponse", "Error", "FeedbackResponse", "Health",
)


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return load_openapi()


def example(doc: dict[str, Any], name: str) -> Any:
    return copy.deepcopy(doc["components"]["examples"][name]["value"])


def valid(name: str, instance: Any) -> bool:
    return not errors(name, instance)


# --- the document itself ---------------------------------------------------

def test_document_is_valid_openapi_3_1(doc):
    assert doc["openapi"] == "3.1.0"
    assert str(get_spec_version(doc)) == "OpenAPIV3.1"
    validate_openapi(doc)


def test_every_component_schema_compiles(doc):
    for name, schema in doc["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
        validator(name)  # builds against the registry; refs resolve lazily
    for name in REQUIRED_SCHEMAS:
        assert name in doc["components"]["schemas"], name


def _refs(node: Any):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_every_ref_is_internal_and_resolves(doc):
    refs = set(_refs(doc))
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/"), ref
        node: Any = doc
        for part in ref[2:].split("/"):
            node = node[part]
    # Resolving every schema $ref through the validators' registry, too.
    for name in doc["components"]["schemas"]:
        errors(name, {})


def test_paths_are_the_documented_ones(doc):
    paths = doc["paths"]
    assert set(paths["/cds-services"]) >= {"get", "options"}
    assert {"200", "401"} <= set(paths["/cds-services"]["get"]["responses"])
    request_schema = {
        "osteoporosis-patient-view": "PatientViewRequest",
        "osteoporosis-order-select": "OrderSelectRequest",
        "osteoporosis-order-sign": "OrderSignRequest",
    }
    for service_id in SERVICE_IDS:
        hook = paths[f"/cds-services/{service_id}"]
        assert set(hook) >= {"post", "options"}
        body = hook["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body["$ref"] == f"#/components/schemas/{request_schema[service_id]}"
        assert set(hook["post"]["responses"]) == {"200", "400", "401", "404", "405", "412", "413", "415", "503"}
        assert hook["post"]["security"] == [{"cdsClientJwt": []}]
        feedback = paths[f"/cds-services/{service_id}/feedback"]
        assert set(feedback) >= {"post", "options"}
        assert set(feedback["post"]["responses"]) == {"200", "400", "401", "404", "413", "415", "503"}
    for templated in ("/cds-services/{service_id}", "/cds-services/{service_id}/feedback"):
        assert "options" in paths[templated]
    assert "503" in paths["/readyz"]["get"]["responses"]
    assert "text/plain" in paths["/metrics"]["get"]["responses"]["200"]["content"]
    assert doc["components"]["securitySchemes"]["cdsClientJwt"]["scheme"] == "bearer"


def test_unknown_service_parameter_excludes_offered_ids(doc):
    # The parameter's `not: $ref` is relative to the document, so validate
    # through a reference into it.
    assert "UnknownServiceId" in doc["components"]["parameters"]
    check = Draft202012Validator(
        {"$ref": f"{schemas.DOCUMENT_URI}#/components/parameters/UnknownServiceId/schema"},
        registry=schemas._registry(),
    )
    for service_id in SERVICE_IDS:
        assert not check.is_valid(service_id)
    assert check.is_valid("osteoporosis-foo")


def _media_examples(doc):
    """(schema name, example value) for every example attached to a JSON body."""
    found = []

    def visit(content):
        for media, body in content.items():
            if media != "application/json" or "$ref" not in body.get("schema", {}):
                continue
            name = body["schema"]["$ref"].rsplit("/", 1)[-1]
            if "example" in body:
                found.append((name, body["example"]))
            for ex in body.get("examples", {}).values():
                if "$ref" in ex:
                    ex = doc["components"]["examples"][ex["$ref"].rsplit("/", 1)[-1]]
                found.append((name, ex["value"]))

    for section in ("responses", "requestBodies"):
        for item in doc["components"].get(section, {}).values():
            visit(item.get("content", {}))
    for path_item in doc["paths"].values():
        for op in path_item.values():
            if not isinstance(op, dict):
                continue
            if "requestBody" in op and "content" in op["requestBody"]:
                visit(op["requestBody"]["content"])
            for response in op.get("responses", {}).values():
                visit(response.get("content", {}))
    return found


def test_every_example_matches_its_schema(doc):
    found = _media_examples(doc)
    assert len(found) >= 15
    names = {name for name, _ in found}
    assert {"PatientViewRequest", "OrderSelectRequest", "OrderSignRequest", "FeedbackRequest",
            "CardsResponse", "DiscoveryResponse", "Error", "FeedbackResponse", "Health"} <= names
    for name, value in found:
        assert errors(name, value) == [], (name, value)


def test_discovery_example_matches_the_services(doc):
    from cds_service.services import all_services

    expected = {"services": [s.discovery_entry() for s in all_services()]}
    assert example(doc, "Discovery") == expected
    assert valid("DiscoveryResponse", expected)
    paths = {f"/cds-services/{s.id}" for s in all_services()}
    assert paths == {f"/cds-services/{i}" for i in SERVICE_IDS}


# --- hook requests ---------------------------------------------------------

def test_sandbox_order_select_without_bundle_type_or_medication_is_valid(doc):
    body = example(doc, "OrderSelectSandboxFirstCall")
    assert "type" not in body["context"]["draftOrders"]
    assert "medicationCodeableConcept" not in body["context"]["draftOrders"]["entry"][0]["resource"]
    assert errors("OrderSelectRequest", body) == []


def test_sandbox_order_sign_without_bundle_type_is_valid(doc):
    body = example(doc, "OrderSignRequest")
    body["context"]["draftOrders"].pop("type", None)
    body.pop("fhirAuthorization")
    assert errors("OrderSignRequest", body) == []


def test_extensions_and_unknown_members_are_accepted(doc):
    body = example(doc, "PatientViewRequest")
    body["extension"] = {"com.example.site": "north"}
    body["com.example.extra"] = 1
    body["context"]["com.example.department"] = "rheumatology"
    body["context"]["encounterId"] = "enc-1"
    assert errors("PatientViewRequest", body) == []


def test_prefetch_null_and_missing_keys_are_valid(doc):
    body = example(doc, "PatientViewRequest")
    body["prefetch"] = {"patient": None}
    assert valid("PatientViewRequest", body)
    del body["prefetch"]
    assert valid("PatientViewRequest", body)


def test_non_uuid_hook_instance_is_tolerated(doc):
    body = example(doc, "PatientViewRequest")
    body["hookInstance"] = "epic-12345"
    assert valid("PatientViewRequest", body)


def test_missing_hook_instance(doc):
    body = example(doc, "PatientViewRequest")
    del body["hookInstance"]
    assert errors("PatientViewRequest", body) == ["hookInstance: 'hookInstance' is a required property"]
    body["hookInstance"] = ""
    assert errors("PatientViewRequest", body) == ["hookInstance: must not be empty"]


def test_wrong_hook_for_the_endpoint(doc):
    body = example(doc, "PatientViewRequest")
    body["hook"] = "order-sign"
    assert errors("PatientViewRequest", body) == ['hook: must be "patient-view", got "order-sign"']
    sandbox = example(doc, "OrderSelectSandboxFirstCall")
    assert errors("OrderSignRequest", sandbox) == ['hook: must be "order-sign", got "order-select"']


def test_fhir_authorization_requires_fhir_server_cds_r_1(doc):
    body = example(doc, "OrderSignRequest")
    del body["fhirServer"]
    assert errors("OrderSignRequest", body) == [
        "fhirServer: fhirServer is required when fhirAuthorization is given (cds-r-1)"
    ]


def test_fhir_authorization_members(doc):
    body = example(doc, "OrderSignRequest")
    body["fhirAuthorization"]["token_type"] = "MAC"
    del body["fhirAuthorization"]["expires_in"]
    found = errors("OrderSignRequest", body)
    assert "fhirAuthorization.expires_in: 'expires_in' is a required property" in found
    assert 'fhirAuthorization.token_type: must be "Bearer", got "MAC"' in found


def test_fhir_server_must_be_an_http_url(doc):
    body = example(doc, "PatientViewRequest")
    body["fhirServer"] = "launch.smarthealthit.org/v/r4/fhir"
    assert errors("PatientViewRequest", body)[0].startswith("fhirServer:")


def test_missing_patient_id(doc):
    body = example(doc, "PatientViewRequest")
    del body["context"]["patientId"]
    assert errors("PatientViewRequest", body) == ["context.patientId: 'patientId' is a required property"]


def test_patient_id_must_be_a_fhir_id(doc):
    body = example(doc, "PatientViewRequest")
    body["context"]["patientId"] = "123&_include=*"
    assert errors("PatientViewRequest", body)[0].startswith("context.patientId:")


def test_order_select_without_selections(doc):
    body = example(doc, "OrderSelectSandboxFirstCall")
    del body["context"]["selections"]
    assert errors("OrderSelectRequest", body) == [
        "context.selections: 'selections' is a required property"
    ]
    body["context"]["selections"] = []
    assert errors("OrderSelectRequest", body) == ["context.selections: needs at least 1 item(s), has 0"]


def test_order_select_and_sign_need_a_bundle_of_draft_orders(doc):
    body = example(doc, "OrderSelectSandboxFirstCall")
    del body["context"]["draftOrders"]
    assert errors("OrderSelectRequest", body) == [
        "context.draftOrders: 'draftOrders' is a required property"
    ]
    body["context"]["draftOrders"] = {"resourceType": "MedicationRequest", "id": "x"}
    assert errors("OrderSelectRequest", body) == [
        'context.draftOrders.resourceType: must be "Bundle", got "MedicationRequest"'
    ]
    sign = example(doc, "OrderSignRequest")
    sign["context"]["draftOrders"]["entry"][0]["resource"] = {"id": "no-type"}
    assert errors("OrderSignRequest", sign) == [
        "context.draftOrders.entry[0].resource.resourceType: 'resourceType' is a required property"
    ]


def test_prefetch_values_must_be_resources_or_null(doc):
    body = example(doc, "PatientViewRequest")
    body["prefetch"]["patient"] = "Patient/smart-1288992"
    body["prefetch"]["conditions"] = {"total": 0}
    assert errors("PatientViewRequest", body) == [
        "prefetch.conditions.resourceType: 'resourceType' is a required property",
        "prefetch.patient: expected object or null, got string",
    ]


def test_body_must_be_an_object():
    assert errors("PatientViewRequest", []) == ["$: expected object, got array"]
    assert errors("FeedbackRequest", None) == ["$: expected object, got null"]


def test_errors_put_shallow_problems_first(doc):
    body = example(doc, "OrderSelectSandboxFirstCall")
    del body["hookInstance"]
    body["context"]["draftOrders"]["entry"][0]["resource"] = {}
    found = errors("OrderSelectRequest", body)
    assert found[0] == "hookInstance: 'hookInstance' is a required property"
    assert found[-1].startswith("context.draftOrders.entry[0].resource.resourceType:")


def test_error_messages_do_not_quote_whole_resources(doc):
    body = example(doc, "PatientViewRequest")
    body["context"] = [body["prefetch"]["patient"]] * 50
    (message,) = errors("PatientViewRequest", body)
    assert message == "context: expected object, got array"
    assert "1951-04-16" not in message


# --- feedback --------------------------------------------------------------

def test_sandbox_feedback_bodies_are_valid(doc):
    assert errors("FeedbackRequest", example(doc, "FeedbackAccepted")) == []
    dismissed = example(doc, "FeedbackDismissedSandbox")
    assert "overrideReason" not in dismissed["feedback"][0]
    assert errors("FeedbackRequest", dismissed) == []
    # The sandbox's overrideReason.reason carries code and system only.
    reason = example(doc, "FeedbackOverriddenWithReason")
    del reason["feedback"][0]["overrideReason"]["userComment"]
    assert "display" not in reason["feedback"][0]["overrideReason"]["reason"]
    assert errors("FeedbackRequest", reason) == []


def test_feedback_accepted_without_accepted_suggestions_cds_fb_2(doc):
    body = example(doc, "FeedbackAccepted")
    del body["feedback"][0]["acceptedSuggestions"]
    assert errors("FeedbackRequest", body) == [
        "feedback[0].acceptedSuggestions: acceptedSuggestions is required when outcome is accepted (cds-fb-2)"
    ]
    body["feedback"][0]["acceptedSuggestions"] = [{}]
    assert errors("FeedbackRequest", body) == [
        "feedback[0].acceptedSuggestions[0].id: 'id' is a required property"
    ]


def test_feedback_override_reason_needs_reason_or_comment_cds_fb_3(doc):
    body = example(doc, "FeedbackOverriddenWithReason")
    body["feedback"][0]["overrideReason"] = {"userComment": "Seen by rheumatology."}
    assert valid("FeedbackRequest", body)
    body["feedback"][0]["overrideReason"] = {}
    assert errors("FeedbackRequest", body) == [
        "feedback[0].overrideReason: an overrideReason needs a reason, a userComment, or both (cds-fb-3)"
    ]


def test_feedback_outcome_and_timestamp(doc):
    body = example(doc, "FeedbackDismissedSandbox")
    body["feedback"][0]["outcome"] = "dismissed"
    body["feedback"][0]["outcomeTimestamp"] = "yesterday"
    assert errors("FeedbackRequest", body) == [
        'feedback[0].outcome: must be one of "accepted", "overridden", got "dismissed"',
        "feedback[0].outcomeTimestamp: must be an RFC 3339 date-time such as 2025-06-01T14:03:27Z",
    ]


def test_feedback_needs_entries():
    assert errors("FeedbackRequest", {"feedback": []}) == ["feedback: needs at least 1 item(s), has 0"]
    assert errors("FeedbackRequest", {}) == ["feedback: 'feedback' is a required property"]


# --- responses -------------------------------------------------------------

def _card(doc) -> dict[str, Any]:
    return example(doc, "CardsTreatmentGap")["cards"][0]


def _cards(card) -> dict[str, Any]:
    return {"cards": [card]}


def test_card_examples_are_valid(doc):
    assert valid("CardsResponse", example(doc, "CardsTreatmentGap"))
    assert valid("CardsResponse", {"cards": []})


def test_card_summary_length(doc):
    card = _card(doc)
    card["summary"] = "x" * 139
    assert valid("CardsResponse", _cards(card))
    card["summary"] = "x" * 140
    assert errors("CardsResponse", _cards(card)) == ["cards[0].summary: must be at most 139 characters, has 140"]


@pytest.mark.parametrize("where, value, message", [
    (("detail",), "", "cards[0].detail: must not be empty"),
    (("detail",), "   ", "cards[0].detail: must not be blank"),
    (("detail",), None, "cards[0].detail: expected string, got null"),
    (("source", "url"), None, "cards[0].source.url: expected string, got null"),
    (("links",), [], "cards[0].links: needs at least 1 item(s), has 0"),
    (("overrideReasons",), [], "cards[0].overrideReasons: needs at least 1 item(s), has 0"),
    (("source", "topic"), {"system": "http://example.org/topics"},
     "cards[0].source.topic.code: 'code' is a required property"),
    (("extension",), {}, "cards[0].extension: needs at least 1 member(s), has 0"),
    (("suggestions", 0, "actions", 0, "resource", "note"), [],
     "cards[0].suggestions[0].actions[0].resource.note: needs at least 1 item(s), has 0"),
    (("suggestions", 0, "actions", 0, "resource", "dispenseRequest"), {},
     "cards[0].suggestions[0].actions[0].resource.dispenseRequest: needs at least 1 member(s), has 0"),
    (("suggestions", 0, "actions", 0, "resource", "status"), None,
     "cards[0].suggestions[0].actions[0].resource.status: expected string or number or boolean or array or object, got null"),
])
def test_card_rejects_nulls_and_empty_values(doc, where, value, message):
    card = _card(doc)
    node = card
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    assert errors("CardsResponse", _cards(card)) == [message]


def test_card_required_members_and_enums(doc):
    card = _card(doc)
    del card["uuid"]
    card["indicator"] = "hard-stop"
    del card["source"]["label"]
    assert errors("CardsResponse", _cards(card)) == [
        "cards[0].uuid: 'uuid' is a required property",
        'cards[0].indicator: must be one of "info", "warning", "critical", got "hard-stop"',
        "cards[0].source.label: 'label' is a required property",
    ]
    card = _card(doc)
    card["uuid"] = "not-a-uuid"
    assert errors("CardsResponse", _cards(card)) == ['cards[0].uuid: "not-a-uuid" is not a valid uuid']


def test_card_rejects_unknown_members(doc):
    card = _card(doc)
    card["summmary"] = "typo"
    assert errors("CardsResponse", _cards(card))[0].startswith("cards[0]: Additional properties")


def test_selection_behavior_required_with_suggestions_cds_resp_6(doc):
    card = _card(doc)
    del card["selectionBehavior"]
    assert errors("CardsResponse", _cards(card)) == [
        "cards[0].selectionBehavior: selectionBehavior is required when suggestions are present (cds-resp-6)"
    ]


def test_at_most_one_recommended_cds_resp_1(doc):
    card = _card(doc)
    second = copy.deepcopy(card["suggestions"][0])
    second["uuid"] = "0f4e2a6b-3c5d-4e7f-8a9b-1c2d3e4f5a6b"
    card["suggestions"].append(second)
    assert errors("CardsResponse", _cards(card)) == [
        "cards[0].suggestions: at most one suggestion may be recommended when selectionBehavior is at-most-one (cds-resp-1)"
    ]
    card["selectionBehavior"] = "any"
    assert valid("CardsResponse", _cards(card))
    card["selectionBehavior"] = "at-most-one"
    second["isRecommended"] = False
    assert valid("CardsResponse", _cards(card))


def test_override_reasons_need_display_cds_resp_4(doc):
    card = _card(doc)
    del card["overrideReasons"][0]["display"]
    assert errors("CardsResponse", _cards(card)) == [
        "cards[0].overrideReasons[0].display: 'display' is a required property"
    ]


def test_actions_need_description_and_fitting_target_cds_resp_2_5(doc):
    card = _card(doc)
    action = card["suggestions"][0]["actions"][0]
    del action["description"]
    del action["resource"]
    assert errors("CardsResponse", _cards(card)) == [
        "cards[0].suggestions[0].actions[0].description: 'description' is a required property",
        "cards[0].suggestions[0].actions[0].resource: 'resource' is a required property",
    ]
    delete = {"type": "delete", "description": "Cancel the draft order.",
              "resourceId": "MedicationRequest/request-123"}
    card["suggestions"][0]["actions"] = [delete]
    assert valid("CardsResponse", _cards(card))
    delete["resource"] = {"resourceType": "MedicationRequest", "id": "request-123"}
    assert errors("CardsResponse", _cards(card)) == [
        "cards[0].suggestions[0].actions[0]: a delete action names its target in resourceId, not resource (cds-resp-2)"
    ]


def test_links_app_context_only_for_smart_cds_resp_3(doc):
    card = _card(doc)
    card["links"] = [{"label": "Fracture risk calculator", "url": "https://apps.example.org/launch",
                      "type": "smart", "appContext": "{\"view\":\"frax\"}"}]
    assert valid("CardsResponse", _cards(card))
    card["links"][0]["type"] = "absolute"
    assert errors("CardsResponse", _cards(card)) == [
        "cards[0].links[0]: appContext is only allowed on smart links (cds-resp-3)"
    ]


def test_system_actions_not_empty(doc):
    assert errors("CardsResponse", {"cards": [], "systemActions": []}) == [
        "systemActions: needs at least 1 item(s), has 0"
    ]


def test_discovery_never_empty_and_strict(doc):
    assert errors("DiscoveryResponse", {"services": []}) == ["services: needs at least 1 item(s), has 0"]
    body = example(doc, "Discovery")
    body["services"][0]["prefetch"] = {}
    body["services"][1]["usageRequirements"] = ""
    body["services"][2]["title"] = None
    assert errors("DiscoveryResponse", body) == [
        "services[0].prefetch: needs at least 1 member(s), has 0",
        "services[1].usageRequirements: must not be empty",
        "services[2].title: expected string, got null",
    ]


def test_error_feedback_and_health_bodies():
    assert valid("Error", {"error": "invalid_request", "message": "context.patientId: missing"})
    assert valid("Error", {"error": "prefetch_unavailable", "message": "x", "details": {"missing": ["patient"]}})
    assert not valid("Error", {"error": "Invalid Request", "message": "x"})
    assert not valid("Error", {"error": "invalid_request", "message": ""})
    assert not valid("Error", {"error": "invalid_request"})
    assert valid("FeedbackResponse", {"stored": 1, "duplicates": 0, "unknownCards": 0})
    assert not valid("FeedbackResponse", {"stored": -1, "duplicates": 0, "unknownCards": 0})
    assert valid("Health", {"status": "ok"}) and valid("Health", {"status": "ready"})
    assert not valid("Health", {"status": "down"})


# --- the helper module -----------------------------------------------------

def test_load_openapi_is_cached_and_validators_too():
    assert load_openapi() is load_openapi()
    assert validator("CardsResponse") is validator("CardsResponse")
    assert validator("CardsResponse").format_checker is not None
    with pytest.raises(KeyError):
        validator("NoSuchSchema")


def test_cds_data_dir_is_honoured(tmp_path, monkeypatch):
    (tmp_path / "openapi").mkdir()
    source = ROOT / "openapi" / "openapi.yaml"
    (tmp_path / "openapi" / "openapi.yaml").write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setenv("CDS_DATA_DIR", str(tmp_path))
    schemas._clear_caches()
    try:
        assert schemas._locate() == tmp_path / "openapi" / "openapi.yaml"
        assert errors("Health", {"status": "ok"}) == []
        monkeypatch.setenv("CDS_DATA_DIR", str(tmp_path / "nowhere"))
        schemas._clear_caches()
        with pytest.raises(FileNotFoundError):
            load_openapi()
    finally:
        monkeypatch.delenv("CDS_DATA_DIR")
        schemas._clear_caches()
