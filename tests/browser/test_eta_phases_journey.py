"""In Chromium: the review page states what the run will do, and the live page names each phase with the time left.

No worker runs here: the worker's own reporter (jobs.reporting.JobReporter) records the phases, as the engine
announces them, so the test takes seconds.
"""

from __future__ import annotations

import pytest

from jobs.models import Job
from jobs.reporting import JobReporter
from jobs.training.spec import RunWork
from tests.browser.wizard import open_quick_lora_review
from tests.jobs.conftest import INSTRUCTIONS, ready_dataset
from webapp.catalog.importing import import_base_model

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WORK = RunWork(eval_batches=3, eval_tokens=300, train_steps=12, tokens_per_step=400, train_cost=2.0)


def test_review_states_the_run_and_the_live_page_follows_its_phases(page_alice, alice, tiny_causal_lm_dir):
    import_base_model(str(tiny_causal_lm_dir), name="tiny-llama")
    ready_dataset(alice, INSTRUCTIONS, "Sums")
    page = page_alice
    open_quick_lora_review(page)
    assert "once before training and once after" in page.inner_text("dd.evaluation")
    assert "own split" in page.inner_text("li.dataset-rows")
    page.click("#start-training")
    page.wait_for_url("**/jobs/*-*/")

    job = Job.objects.get()
    job.start("worker-a")
    reporter = JobReporter(job, row_interval=0)
    reporter.phase("loading", 0, 1, None)
    page.reload()
    assert "Loading the model and data" in page.inner_text("#job-phase")

    reporter.phase("evaluating_base", 0, 3, WORK)
    reporter.phase("evaluating_base", 1, 3, None)
    page.reload()
    assert "Measuring the base model" in page.inner_text("#job-phase")
    assert "left" in page.inner_text("#job-eta")

    reporter.phase("training", 0, 1, None)
    reporter.progress(12, 12, 1.0, 1.2, 1e-4, {})
    reporter.phase("evaluating", 0, 3, None)
    page.wait_for_selector("#job-phase:has-text('Final evaluation')")  # the page polls by itself
    eta = page.inner_text("#job-eta")
    assert "left" in eta and "0 s" not in eta, "the last step is not the end: evaluation and saving remain"
