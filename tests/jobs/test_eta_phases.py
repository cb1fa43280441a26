"""The ETA counts every phase still to come, and the live page names the phase a running job is in."""

from __future__ import annotations

import pytest

from jobs import services
from jobs.models import Job
from jobs.reporting import MIN_SAVE_SECONDS, JobReporter, PhaseClock
from jobs.training.spec import RunWork

WORK = RunWork(eval_batches=4, eval_tokens=400, train_steps=10, tokens_per_step=200)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run_to_training(clock: FakeClock, phases: PhaseClock) -> None:
    """20 s of loading, then a base evaluation of 4 batches at 2 s each."""
    clock.now += 20
    phases.enter("evaluating_base", 0, 4, WORK)
    for done in range(1, 5):
        clock.now += 2
        phases.enter("evaluating_base", done, 4, None)
    phases.enter("training", 0, 1, None)


def test_no_eta_while_loading_and_before_anything_is_measured() -> None:
    clock = FakeClock()
    phases = PhaseClock(clock)
    assert phases.eta() is None
    clock.now += 20
    phases.enter("evaluating_base", 0, 4, WORK)
    assert phases.eta() is None, "nothing measured yet: no guess"


def test_eta_during_base_evaluation_counts_training_final_evaluation_and_saving() -> None:
    clock = FakeClock()
    phases = PhaseClock(clock)
    clock.now += 20
    phases.enter("evaluating_base", 0, 4, WORK)
    clock.now += 2
    phases.enter("evaluating_base", 1, 4, None)
    # 2 s per batch of 100 tokens: a 200-token training step predicted at 3 x 4 s (train_cost 3, full fine-tuning).
    step = 2 / 100 * 200 * WORK.train_cost
    save = max(MIN_SAVE_SECONDS, 0.5 * 20)
    assert phases.eta() == pytest.approx(3 * 2 + 10 * step + 4 * 2 + save)


def test_eta_during_training_uses_measured_steps_and_keeps_the_final_evaluation() -> None:
    clock = FakeClock()
    phases = PhaseClock(clock)
    run_to_training(clock, phases)
    phases.training_step(1, 10)
    clock.now += 5 * 3
    phases.training_step(6, 10)  # 3 s a step
    assert phases.eta() == pytest.approx(4 * 3 + 4 * 2 + 10)
    clock.now += 4 * 3
    phases.training_step(10, 10)
    assert phases.eta() == pytest.approx(4 * 2 + 10), "the last step is not the end: evaluation and saving remain"


def test_eta_never_reads_zero_while_work_remains() -> None:
    clock = FakeClock()
    phases = PhaseClock(clock)
    run_to_training(clock, phases)
    phases.training_step(1, 10)
    clock.now += 27
    phases.training_step(10, 10)
    phases.enter("evaluating", 0, 4, None)
    clock.now += 8
    phases.enter("evaluating", 4, 4, None)
    assert phases.eta() == pytest.approx(10)
    phases.enter("saving", 0, 1, None)
    clock.now += 60  # saving took far longer than predicted
    assert phases.eta() is not None and phases.eta() >= 1
    phases.enter("registering", 0, 1, None)
    assert phases.eta() >= 1


@pytest.mark.django_db
def test_the_live_page_names_the_phase_and_the_time_left(client_alice, alice, tiny_lm, sft_data):
    job = services.create_job(services.plan_job(alice, tiny_lm.id, [sft_data.id], "lora"), send=False)
    job.start("worker-a")
    reporter = JobReporter(job, row_interval=0)
    reporter.phase("loading", 0, 1, None)
    assert Job.objects.get(pk=job.pk).progress["phase"] == "loading"
    page = client_alice.get(f"/jobs/{job.id}/").content.decode()
    assert "Loading the model and data" in page

    reporter.phase("evaluating_base", 0, 4, WORK)
    reporter.phase("evaluating_base", 1, 4, None)
    progress = Job.objects.get(pk=job.pk).progress
    assert progress["phase"] == "evaluating_base" and progress["phase_done"] == 1 and progress["phase_total"] == 4
    assert progress["eta_seconds"] is not None and progress["eta_seconds"] > 0
    page = client_alice.get(f"/jobs/{job.id}/", HTTP_HX_REQUEST="true").content.decode()
    assert "Measuring the base model" in page and "batch 1 / 4" in page and "left" in page
    assert client_alice.get(f"/api/v1/jobs/{job.id}/").json()["progress"]["phase"] == "evaluating_base"


def test_a_slow_first_evaluation_batch_does_not_set_the_rate() -> None:
    clock = FakeClock()
    phases = PhaseClock(clock)
    clock.now += 20
    phases.enter("evaluating_base", 0, 4, WORK)
    clock.now += 40  # the weights are paged in on the first forward pass
    phases.enter("evaluating_base", 1, 4, None)
    clock.now += 2
    phases.enter("evaluating_base", 2, 4, None)
    assert phases.eval_batch_seconds == pytest.approx(2)


def test_the_progress_bar_follows_every_phase_not_only_the_steps(alice, tiny_lm, sft_data):
    from datetime import timedelta

    from django.utils import timezone

    from jobs import charts, services
    from jobs.models import Job

    job = services.create_job(services.plan_job(alice, tiny_lm.id, [sft_data.id], "lora"), send=False)
    job.start("w")
    # Every step trained, the final evaluation under way: 90 s spent, 30 s left.
    Job.objects.filter(pk=job.pk).update(
        started_at=timezone.now() - timedelta(seconds=90),
        progress={"step": 10, "total_steps": 10, "phase": "evaluating", "eta_seconds": 30},
    )
    job.refresh_from_db()
    assert 74 <= charts.percent_done(job) <= 76
    Job.objects.filter(pk=job.pk).update(progress={"step": 10, "total_steps": 10, "eta_seconds": None})
    job.refresh_from_db()
    assert charts.percent_done(job) == 99  # all steps done, but not finished
