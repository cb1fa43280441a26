"""In Chromium: Back to the review page and "Start training" again opens the same job; the live page follows the job.

No worker runs here: the job's state is moved by the same transitions a worker calls, so each test takes seconds.
"""

from __future__ import annotations

import pytest

from jobs.models import Job, JobEvent
from tests.browser.wizard import open_quick_lora_review
from tests.jobs.conftest import INSTRUCTIONS, ready_dataset
from webapp.catalog.importing import import_base_model

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def ready(alice, tiny_causal_lm_dir):  # type: ignore[no-untyped-def]
    base = import_base_model(str(tiny_causal_lm_dir), name="tiny-llama")
    return base, ready_dataset(alice, INSTRUCTIONS, "Sums")


def test_back_to_the_review_and_start_again_opens_the_same_job(page_alice, ready):
    page = page_alice
    open_quick_lora_review(page)
    page.click("#start-training")
    page.wait_for_url("**/jobs/*-*/")
    first_url = page.url

    page.go_back()
    page.wait_for_selector("#start-training")
    page.click("#start-training")
    page.wait_for_url("**/jobs/*-*/")
    assert page.url == first_url
    assert Job.objects.count() == 1
    assert "already submitted" in page.content()


def test_live_page_drops_cancel_when_the_job_ends_and_the_log_follows(page_alice, alice, ready):
    from jobs import services

    base, dataset = ready
    job = services.create_job(services.plan_job(alice, base.id, [dataset.id], "lora"))
    job.start("worker-a")
    for step in range(1, 61):
        JobEvent.objects.create(job=job, step=step, total_steps=100, loss=3.0 - step / 50)
    page = page_alice
    page.goto(f"/jobs/{job.id}/")
    assert page.is_visible("#cancel-job")
    at_end = "el => el.scrollHeight - el.scrollTop - el.clientHeight <= 24"
    assert page.eval_on_selector("#job-log", at_end)

    # New lines arrive: the log stays on the newest one.
    for step in range(61, 81):
        JobEvent.objects.create(job=job, step=step, total_steps=100, loss=1.5)
    page.wait_for_selector("#job-log:has-text('step 80/100')")
    assert page.eval_on_selector("#job-log", at_end)

    # The reader scrolls up: the next poll keeps their place.
    page.eval_on_selector("#job-log", "el => { el.scrollTop = 0; }")
    JobEvent.objects.create(job=job, step=81, total_steps=100, loss=1.4)
    page.wait_for_selector("#job-log:has-text('step 81/100')")
    assert page.eval_on_selector("#job-log", "el => el.scrollTop") < 5

    # The job ends (as its worker records it): Cancel goes and Retry comes, without a reload.
    job.fail("stopped for the test")
    page.wait_for_selector("#job-progress[data-status=failed]")
    page.wait_for_selector("#retry-job")
    assert page.locator("#cancel-job").count() == 0
