"""The periodic check recovers every kind of background work, not only training jobs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs import tasks
from tests.datasets.conftest import upload
from webapp.datasets import services as dataset_services
from webapp.datasets import tasks as dataset_tasks
from webapp.datasets.models import Dataset
from webapp.playground.models import PlaygroundRun
from webapp.playground.models import Status as RunStatus

pytestmark = pytest.mark.django_db


def test_check_jobs_runs_each_apps_recovery(monkeypatch):
    called: list[str] = []
    for name in ("recover_stuck_checks", "recover_stuck_runs", "recover_stuck_profiles"):
        monkeypatch.setattr(tasks, name, lambda *args, name=name: called.append(name) or [])
    tasks.check_jobs()
    assert called == ["recover_stuck_checks", "recover_stuck_runs", "recover_stuck_profiles"]


def test_check_jobs_resends_a_lost_check_and_fails_a_run_whose_worker_died(alice, monkeypatch, settings, django_capture_on_commit_callbacks):
    sent: list[list[str]] = []
    monkeypatch.setattr(dataset_tasks.check_dataset, "apply_async", lambda args, task_id: sent.append(args))
    dataset = dataset_services.ingest(upload("a.csv", "text\na\n"), alice)
    long_ago = timezone.now() - timedelta(seconds=settings.LAYERCAKE_CHECK_STUCK_SECONDS + 1)
    Dataset.objects.filter(pk=dataset.pk).update(check_sent_at=long_ago)
    run = PlaygroundRun.objects.create(owner=alice, prompt="Hello", answers=[])
    assert run.start("inference@gone")
    PlaygroundRun.objects.filter(pk=run.pk).update(started_at=long_ago)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.check_jobs()
    assert sent == [[str(dataset.pk)]]
    assert PlaygroundRun.objects.get(pk=run.pk).status == RunStatus.FAILED
