"""Submitting a reviewed job is idempotent: the review page's token (or the API's Idempotency-Key) makes one job."""

from __future__ import annotations

import re

import pytest

from jobs.models import Job
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db


def wizard_data(base, dataset, **extra):  # type: ignore[no-untyped-def]
    return {"task": "sft", "base_model": str(base.id), "datasets": [str(dataset.id)], "method": "lora", "preset": "quick", **extra}


def review_token(client, data) -> str:  # type: ignore[no-untyped-def]
    page = client.post("/jobs/new/", {**data, "action": "review"}).content.decode()
    found = re.search(r'name="submit_token" value="([0-9a-f]+)"', page)
    assert found, "the review page carries no submit token"
    return found.group(1)


def test_the_same_review_submitted_twice_makes_one_job_and_opens_it(client_alice, tiny_lm, sft_data):
    data = wizard_data(tiny_lm, sft_data)
    token = review_token(client_alice, data)
    first = client_alice.post("/jobs/new/", {**data, "submit_token": token, "action": "submit"})
    second = client_alice.post("/jobs/new/", {**data, "submit_token": token, "action": "submit"})
    job = Job.objects.get()
    assert first["Location"] == second["Location"] == f"/jobs/{job.id}/"
    assert "already submitted" in client_alice.get(second["Location"]).content.decode()


def test_the_second_submit_finds_the_job_even_when_its_dataset_changed_since(client_alice, tiny_lm, sft_data):
    data = wizard_data(tiny_lm, sft_data)
    token = review_token(client_alice, data)
    client_alice.post("/jobs/new/", {**data, "submit_token": token, "action": "submit"})
    sft_data.delete()
    response = client_alice.post("/jobs/new/", {**data, "submit_token": token, "action": "submit"})
    assert response.status_code == 302 and response["Location"] == f"/jobs/{Job.objects.get().id}/"


def test_each_review_has_its_own_token(client_alice, tiny_lm, sft_data):
    data = wizard_data(tiny_lm, sft_data)
    tokens = {review_token(client_alice, data) for _ in range(2)}
    assert len(tokens) == 2
    for token in tokens:
        client_alice.post("/jobs/new/", {**data, "submit_token": token, "action": "submit"})
    assert Job.objects.count() == 2


def test_a_token_is_per_user(client, alice, bob, tiny_lm, sft_data):
    from tests.jobs.conftest import INSTRUCTIONS, ready_dataset

    client.force_login(alice)
    client.post("/jobs/new/", {**wizard_data(tiny_lm, sft_data), "submit_token": "same", "action": "submit"})
    bobs = ready_dataset(bob, INSTRUCTIONS[:20], "bobs")
    client.force_login(bob)
    response = client.post("/jobs/new/", {**wizard_data(tiny_lm, bobs), "submit_token": "same", "action": "submit"})
    assert Job.objects.filter(owner=bob).count() == 1
    assert response["Location"] == f"/jobs/{Job.objects.get(owner=bob).id}/"


def api_body(base, dataset):  # type: ignore[no-untyped-def]
    return {"base_model": str(base.id), "dataset": str(dataset.id), "method": "lora", "hyperparameters": {"preset": "quick"}}


def test_api_idempotency_key_answers_the_first_job_again(api_alice, tiny_lm, sft_data):
    first = api_alice.post("/api/v1/jobs/", api_body(tiny_lm, sft_data), format="json", HTTP_IDEMPOTENCY_KEY="nightly-42")
    second = api_alice.post("/api/v1/jobs/", api_body(tiny_lm, sft_data), format="json", HTTP_IDEMPOTENCY_KEY="nightly-42")
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"] and second["Idempotent-Replayed"] == "true"
    assert Job.objects.count() == 1
    assert api_alice.post("/api/v1/jobs/", api_body(tiny_lm, sft_data), format="json").status_code == 201
    assert Job.objects.count() == 2


def test_api_idempotency_key_of_another_user_is_not_theirs(api_alice, bob, tiny_lm, sft_data):
    api_alice.post("/api/v1/jobs/", api_body(tiny_lm, sft_data), format="json", HTTP_IDEMPOTENCY_KEY="k")
    response = api_client_for(bob).post("/api/v1/jobs/", api_body(tiny_lm, sft_data), format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert response.status_code == 400 and "dataset" in response.json()["error"].lower()


def test_api_idempotency_key_too_long_is_a_400(api_alice, tiny_lm, sft_data):
    response = api_alice.post("/api/v1/jobs/", api_body(tiny_lm, sft_data), format="json", HTTP_IDEMPOTENCY_KEY="x" * 201)
    assert response.status_code == 400 and "Idempotency-Key" in response.json()["error"]
    assert Job.objects.count() == 0
