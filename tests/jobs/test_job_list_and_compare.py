"""The jobs list shows each run's duration and main metric; two runs compare side by side."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs import charts, services
from jobs.models import Job, JobEvent

pytestmark = pytest.mark.django_db


def finished_job(owner, base, dataset, loss: float, minutes: int) -> Job:  # type: ignore[no-untyped-def]
    job = services.create_job(services.plan_job(owner, base.id, [dataset.id], "lora"))
    job.start("worker-a")
    job.fail("stopped for the test")  # ended, with the figures a finished run records
    now = timezone.now()
    Job.objects.filter(pk=job.pk).update(
        started_at=now - timedelta(minutes=minutes, seconds=5), finished_at=now,
        metrics={"base": {"arithmetic": {"loss": 2.0}}, "tuned": {"arithmetic": {"loss": loss}}},
    )
    for step, value in ((1, 2.0), (2, loss)):
        JobEvent.objects.create(job=job, step=step, total_steps=2, loss=value)
    JobEvent.objects.create(job=job, step=2, total_steps=2, metrics={"eval_d0_loss": loss})
    job.refresh_from_db()
    return job


@pytest.fixture
def two_runs(alice, tiny_lm, sft_data) -> tuple[Job, Job]:
    return finished_job(alice, tiny_lm, sft_data, 1.25, 3), finished_job(alice, tiny_lm, sft_data, 0.75, 1)


def test_list_shows_duration_and_main_metric(client_alice, two_runs):
    page = client_alice.get("/jobs/").content.decode()
    assert "3 min 05 s" in page and "1 min 05 s" in page
    assert "Validation loss 1.2500" in page and "Validation loss 0.7500" in page
    assert 'aria-label="better than the base"' in page


def test_main_metric_prefers_f1_for_classifiers_and_knows_which_way_is_better():
    metric = charts.main_metric({"base": {"s": {"loss": 0.7, "macro_f1": 0.4}}, "tuned": {"s": {"loss": 0.3, "macro_f1": 0.9}}})
    assert metric is not None and metric.label == "Macro F1" and metric.value == 0.9 and metric.improved
    assert charts.main_metric({}) is None


def test_compare_page_draws_both_curves_and_their_metrics(client_alice, two_runs):
    first, second = two_runs
    page = client_alice.get(f"/jobs/compare/?job={first.id}&job={second.id}").content.decode()
    assert page.count('class="point-eval"') == 2 and 'data-run="lora · ' in page
    assert "Validation loss (tuned, arithmetic)" in page and "1.2500" in page and "0.7500" in page
    assert "3 min 05 s" in page and "1 min 05 s" in page


def test_compare_page_without_two_runs_asks_to_pick(client_alice, two_runs):
    page = client_alice.get(f"/jobs/compare/?job={two_runs[0].id}").content.decode()
    assert "Pick two runs" in page and "<svg" not in page


def test_compare_with_another_users_job_is_404(client, charlie, two_runs, tiny_lm):
    from tests.jobs.conftest import INSTRUCTIONS, ready_dataset

    theirs = finished_job(charlie, tiny_lm, ready_dataset(charlie, INSTRUCTIONS[:20], "c"), 1.0, 1)
    client.force_login(charlie)
    assert client.get(f"/jobs/compare/?job={theirs.id}&job={two_runs[0].id}").status_code == 404
    assert client.get("/jobs/compare/?job=not-a-uuid&job=x").status_code == 404
