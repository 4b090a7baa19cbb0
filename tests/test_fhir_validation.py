"""The shared FHIR check of suggested resources, with its cache."""

from __future__ import annotations

from cds_service.fhir import validation


def _order(patient: str, **extra) -> dict:
    resource = {
        "resourceType": "MedicationRequest", "status": "draft", "intent": "order",
        "medicationCodeableConcept": {"text": "alendronate 70 mg oral tablet"},
        "subject": {"reference": f"Patient/{patient}"}, "authoredOn": "2025-06-01",
    }
    resource.update(extra)
    return resource


def test_valid_and_invalid_resources():
    assert validation.fhir_problems(_order("p1")) is None
    problem = validation.fhir_problems({"resourceType": "MedicationRequest", "status": "draft"})
    assert problem and "subject" in problem
    assert validation.fhir_problems({"resourceType": "NoSuchThing"}) == "unknown resourceType NoSuchThing"
    assert validation.fhir_problems(["not", "a", "resource"]) == "not a FHIR resource"


def test_same_order_for_another_patient_is_checked_once():
    validation._problems_of_json.cache_clear()
    assert validation.fhir_problems(_order("p1")) is None
    assert validation.fhir_problems(_order("p-2.b")) is None
    info = validation._problems_of_json.cache_info()
    assert (info.misses, info.hits) == (1, 1)


def test_other_content_is_not_taken_from_the_cache():
    validation._problems_of_json.cache_clear()
    assert validation.fhir_problems(_order("p1")) is None
    # Same patient form, different (invalid) content: checked, not reused.
    assert validation.fhir_problems(_order("p1", authoredOn="not a date")) is not None
    # A subject that is not a plain patient reference is kept in the key as it is.
    assert validation.fhir_problems(_order("p1", subject={"reference": "Patient/p1", "display": 5})) is not None
    assert validation._problems_of_json.cache_info().hits == 0


def test_non_json_values_are_checked_uncached():
    import datetime as dt

    assert validation.fhir_problems(_order("p1", authoredOn=dt.date(2025, 6, 1))) is None


def test_a_non_finite_number_is_not_answered_from_a_null_entry():
    # orjson writes NaN as null: such a resource is checked as it is, uncached.
    validation._problems_of_json.cache_clear()
    nan = _order("p1", dosageInstruction=[{"doseAndRate": [{"doseQuantity": {"value": float("nan")}}]}])
    validation.fhir_problems(nan)
    assert validation._problems_of_json.cache_info().currsize == 0


def test_a_resource_with_a_null_is_checked_as_it_is_each_time():
    validation._problems_of_json.cache_clear()
    for resource in (_order("p1", note=None), _order("p1", dosageInstruction=[{"sequence": float("inf")}])):
        for _ in range(2):
            assert validation.fhir_problems(resource) == validation._problems(dict(resource, subject={"reference": "Patient/any"}))
    info = validation._problems_of_json.cache_info()
    assert (info.hits, info.currsize) == (0, 0)
