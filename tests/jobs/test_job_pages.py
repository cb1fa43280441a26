"""The job wizard, list, live page and workers page in the browser's HTTP terms."""

from __future__ import annotations

import pytest

from jobs import services
from jobs.models import Job, JobEvent, Status, Worker

pytestmark = pytest.mark.django_db


def wizard_data(base, dataset, **extra):  # type: ignore[no-untyped-def]
    return {"task": "sft", "base_model": str(base.id), "datasets": [str(dataset.id)], "method": "lora", "preset": "quick", **extra}


def test_wizard_offers_only_fitting_models_and_datasets(client_alice, tiny_lm, tiny_bert, sft_data, sentiment_data):
    page = client_alice.get("/jobs/new/?task=sft").content.decode()
    assert "tiny-llama" in page and "tiny-bert" not in page
    assert "arithmetic" in page and "sentiment" not in page
    page = client_alice.get("/jobs/new/?task=classification").content.decode()
    assert "tiny-bert" in page and "sentiment" in page and "arithmetic" not in page


def test_wizard_shows_impossible_methods_disabled_with_the_reason(client_alice, tiny_bert, sentiment_data):
    page = client_alice.get("/jobs/new/?task=classification").content.decode()
    assert "QLoRA needs a CUDA GPU worker" in page
    assert "not available for the classification task" in page


def test_review_shows_estimates_and_creates_nothing(client_alice, tiny_lm, sft_data):
    response = client_alice.post("/jobs/new/", {**wizard_data(tiny_lm, sft_data), "action": "review"})
    page = response.content.decode()
    assert response.status_code == 200
    assert "Trainable parameters" in page and "Optimizer state" in page and "Start training" in page
    assert Job.objects.count() == 0


def test_submit_creates_the_job_and_opens_its_page(client_alice, tiny_lm, sft_data):
    response = client_alice.post("/jobs/new/", {**wizard_data(tiny_lm, sft_data, epochs="2"), "action": "submit"})
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.id}/"
    assert job.hyperparameters["epochs"] == 2 and job.hyperparameters["preset"] == "quick"


def test_wizard_errors_are_shown_not_raised(client_alice, tiny_lm, sft_data):
    response = client_alice.post("/jobs/new/", {**wizard_data(tiny_lm, sft_data, method="prompt_tuning"), "action": "review"})
    assert response.status_code == 200
    assert "prompt_init_text" in response.content.decode() or "Prompt tuning" in response.content.decode()
    assert Job.objects.count() == 0


@pytest.fixture
def job(alice, tiny_lm, sft_data) -> Job:
    return services.create_job(services.plan_job(alice, tiny_lm.id, [sft_data.id], "lora"))


def test_job_page_shows_progress_chart_and_log(client_alice, job):
    job.start("worker-a")
    Job.objects.filter(pk=job.pk).update(progress={"step": 5, "total_steps": 10, "epoch": 0.5, "loss": 1.5, "eta_seconds": 12})
    for step, loss in ((1, 3.0), (5, 1.5)):
        JobEvent.objects.create(job=job, step=step, total_steps=10, loss=loss)
    page = client_alice.get(f"/jobs/{job.id}/").content.decode()
    assert "step 5 / 10" in page and "about 12 s left" in page
    assert 'aria-valuenow="50"' in page
    assert "<polyline" in page and "loss 3.0000" in page
    assert 'hx-trigger="every 2s"' in page


def test_htmx_poll_returns_only_the_progress_partial_and_stops_when_final(client_alice, job):
    job.cancel()
    response = client_alice.get(f"/jobs/{job.id}/", HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="job-progress"')
    assert "every 2s" not in html


def test_cancel_and_retry_buttons(client_alice, job):
    client_alice.post(f"/jobs/{job.id}/cancel/")
    job.refresh_from_db()
    assert job.status == Status.CANCELLED
    response = client_alice.post(f"/jobs/{job.id}/retry/")
    retried = Job.objects.exclude(pk=job.pk).get()
    assert response["Location"] == f"/jobs/{retried.id}/" and retried.retry_of_id == job.id


def test_list_filters_by_status(client_alice, job, alice, tiny_lm, sft_data):
    other = services.create_job(services.plan_job(alice, tiny_lm.id, [sft_data.id], "full"))
    other.cancel()
    page = client_alice.get("/jobs/?status=cancelled").content.decode()
    assert str(other.id)[:8] in page and str(job.id)[:8] not in page


@pytest.mark.parametrize(("method", "suffix"), [("get", ""), ("post", "cancel/"), ("post", "retry/")])
def test_another_users_job_pages_are_404(client, charlie, job, method, suffix):
    client.force_login(charlie)
    assert getattr(client, method)(f"/jobs/{job.id}/{suffix}").status_code == 404
    assert str(job.id)[:8] not in client.get("/jobs/").content.decode()


def test_workers_page_lists_devices_queues_and_state(client_alice):
    Worker.objects.create(hostname="gpu@box", queues=["gpu"], devices=[{"kind": "cuda", "name": "NVIDIA H100", "memory_bytes": 80 * 2**30}])
    page = client_alice.get("/workers/").content.decode()
    assert "gpu@box" in page and "NVIDIA H100" in page and "online" in page


def test_first_visit_and_choice_changes_show_no_required_errors(client_alice, tiny_lm, sft_data):
    for url in ("/jobs/new/", "/jobs/new/?task=sft", f"/jobs/new/?task=sft&base_model={tiny_lm.id}"):
        assert "This field is required" not in client_alice.get(url).content.decode()
    posted = client_alice.post("/jobs/new/", {"task": "sft", "action": "review"}).content.decode()
    assert "This field is required" in posted
