"""The live job page: actions follow the job's state, readable metric names, a chart with axes, smoothing and points."""

from __future__ import annotations

import pytest

from jobs import charts, services
from jobs.models import Job, JobEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(alice, tiny_lm, sft_data) -> Job:
    return services.create_job(services.plan_job(alice, tiny_lm.id, [sft_data.id], "lora"))


def poll(client, job: Job) -> str:  # type: ignore[no-untyped-def]
    return client.get(f"/jobs/{job.id}/", HTTP_HX_REQUEST="true").content.decode()


def test_the_poll_swaps_the_actions_so_cancel_goes_when_the_job_ends(client_alice, job):
    job.start("worker-a")
    running = poll(client_alice, job)
    assert 'id="job-actions" hx-swap-oob="true"' in running and 'id="cancel-job"' in running
    job.fail("boom")
    ended = poll(client_alice, job)
    assert 'id="job-actions" hx-swap-oob="true"' in ended
    assert 'id="cancel-job"' not in ended and 'id="retry-job"' in ended and "every 2s" not in ended


def test_a_stop_requested_shows_stopping_instead_of_cancel(client_alice, job):
    job.start("worker-a")
    client_alice.post(f"/jobs/{job.id}/cancel/")
    page = client_alice.get(f"/jobs/{job.id}/").content.decode()
    assert "Stopping…</button>" in page and 'class="danger" type="submit" id="cancel-job"' not in page


def test_cancel_of_a_finished_job_says_why_in_the_page(client_alice, job):
    job.start("worker-a")
    job.fail("boom")
    response = client_alice.post(f"/jobs/{job.id}/cancel/", follow=True)
    assert response.status_code == 200 and "already ended (failed)" in response.content.decode()


def test_log_and_metrics_use_readable_names(client_alice, job):
    job.start("worker-a")
    JobEvent.objects.create(job=job, step=4, total_steps=4, metrics={"eval_d0_loss": 1.25, "eval_d0_model_preparation_time": 0.01})
    Job.objects.filter(pk=job.pk).update(metrics={"base": {"arithmetic": {"loss": 2.0}}, "tuned": {"arithmetic": {"loss": 1.0}}})
    page = client_alice.get(f"/jobs/{job.id}/").content.decode()
    assert "Validation loss 1.2500" in page and "Model preparation time (s) 0.0100" in page
    assert "eval_d0" not in page.split('id="job-log"')[1].split("</pre>")[0]
    assert "<td title=\"loss\">Validation loss</td>" in page


def test_metric_labels_name_the_dataset_when_there_are_several():
    assert charts.metric_label("eval_d0_loss") == "Validation loss"
    assert charts.metric_label("eval_d1_accuracy", ["news", "reviews"]) == "Accuracy (reviews)"
    assert charts.metric_label("eval_all_loss", ["news", "reviews"]) == "Validation loss (all datasets)"
    assert charts.metric_label("eval_d0_samples_per_second") == "Evaluation samples/s"


def test_one_validation_point_is_drawn_and_the_axes_have_step_and_loss_ticks(client_alice, job):
    job.start("worker-a")
    for step, loss in ((1, 3.0), (2, 2.0), (3, 2.5), (4, 1.5)):
        JobEvent.objects.create(job=job, step=step, total_steps=10, loss=loss)
    JobEvent.objects.create(job=job, step=4, total_steps=10, metrics={"eval_d0_loss": 1.8})
    chart = charts.loss_chart(list(job.events.all()))
    (line,) = chart.lines
    assert len(line.markers) == 1 and line.validation == ""  # one point: a marker, no line
    assert [tick.label for tick in chart.x_ticks][0] == "0" and chart.x_ticks[-1].label == "10"
    assert chart.y_ticks[0].label <= "1.5" and float(chart.y_ticks[-1].label) >= 3.0
    page = client_alice.get(f"/jobs/{job.id}/").content.decode()
    assert 'class="point-eval"' in page and 'class="line-raw"' in page and ">step</text>" in page and ">loss</text>" in page


def test_smoothing_is_a_debiased_moving_average():
    assert charts.smooth([2.0]) == pytest.approx([2.0])
    smoothed = charts.smooth([3.0, 1.0, 1.0, 1.0])
    assert smoothed[0] == pytest.approx(3.0) and 1.0 < smoothed[-1] < smoothed[1] < 3.0


def test_nice_ticks_are_round_and_cover_the_range():
    assert charts.nice_ticks(0, 45) == [0, 10, 20, 30, 40, 50]
    ticks = charts.nice_ticks(1.37, 2.91)
    assert ticks[0] <= 1.37 and ticks[-1] >= 2.91 and all(round(t * 10) == t * 10 for t in ticks)
