"""The API schema and the wizard describe the hyperparameters from their one definition."""

from __future__ import annotations

from jobs.forms import FLOAT_FIELDS, INT_FIELDS
from jobs.training.spec import HYPERPARAMETERS


def test_openapi_schema_lists_every_hyperparameter_with_its_range_and_help(api_alice) -> None:
    schema = api_alice.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    documented = schema["components"]["schemas"]["Hyperparameters"]["properties"]
    assert list(documented) == list(HYPERPARAMETERS)
    assert documented["learning_rate"]["minimum"] == 1e-7 and documented["learning_rate"]["maximum"] == 1.0
    assert documented["batch_size"]["type"] == "integer"
    assert documented["packing"]["type"] == "boolean"
    # drf-spectacular names enums as components of their own.
    (preset,) = documented["preset"]["allOf"]
    assert schema["components"]["schemas"][preset["$ref"].rsplit("/", 1)[1]]["enum"] == ["quick", "balanced", "thorough"]
    assert documented["lora_r"]["description"] == HYPERPARAMETERS["lora_r"]["help"]
    create = next(v for k, v in schema["components"]["schemas"].items() if k.startswith("JobCreate"))
    assert "#/components/schemas/Hyperparameters" in str(create["properties"]["hyperparameters"])


def test_wizard_offers_the_knobs_marked_for_it_with_their_help(client_alice) -> None:
    page = client_alice.get("/jobs/new/?task=sft").content.decode()
    for name in INT_FIELDS + FLOAT_FIELDS:
        assert f'name="{name}"' in page
    assert "lora_r" in INT_FIELDS and "learning_rate" in FLOAT_FIELDS
    assert "activation_checkpointing" not in INT_FIELDS + FLOAT_FIELDS
