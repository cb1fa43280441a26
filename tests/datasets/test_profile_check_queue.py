"""While a dataset waits to be checked, its page says where it stands in the checks queue (counts only)."""

from __future__ import annotations

import pytest
from django.conf import settings

from tests.datasets.conftest import upload
from webapp.datasets import services

pytestmark = pytest.mark.django_db


@pytest.fixture
def checks_worker():  # type: ignore[no-untyped-def]
    from jobs.models import Worker

    return Worker.objects.create(hostname="checks@host", queues=[settings.CHECKS_QUEUE])


def queued(owner, name="a.txt"):  # type: ignore[no-untyped-def]
    return services.ingest(upload(name, "hello\n"), owner)


def test_checks_asked_for_earlier_and_those_running_are_ahead(alice, bob, checks_worker):
    first, second, mine = queued(bob), queued(bob), queued(alice)
    assert first.begin_check()
    position = services.check_queue_position(mine)
    assert (position.checks_ahead, position.checking, position.workers) == (1, 1, 1)
    assert position.describe() == "Waiting in the queue: 1 check ahead of this one, 1 being checked now."
    assert services.check_queue_position(second).checks_ahead == 0


def test_checking_again_goes_to_the_back_of_the_queue(alice, checks_worker):
    older = services.check_dataset(queued(alice))
    newer = queued(alice)
    services.change_settings(older, max_length=64)
    assert services.check_queue_position(older).checks_ahead == 1
    assert services.check_queue_position(newer).checks_ahead == 0


def test_a_training_job_holding_the_checking_worker_is_counted(alice, checks_worker):
    from jobs.models import Job
    from webapp.catalog.models import CatalogModel

    model = CatalogModel.objects.create(name="m", kind="base", family="causal_lm", storage_prefix="models/m")
    checks_worker.current_job = Job.objects.create(owner=alice, base_model=model, method="lora", task="sft", queue="cpu")
    checks_worker.save()
    position = services.check_queue_position(queued(alice))
    assert position.jobs_running == 1
    assert "1 training job holding the checking worker" in position.describe()


def test_no_checking_worker_online_is_said(alice):
    position = services.check_queue_position(queued(alice))
    assert position.workers == 0
    assert "No worker that checks datasets is online" in position.describe()


def test_the_first_in_line_is_next(alice, checks_worker):
    assert services.check_queue_position(queued(alice)).describe().startswith("Next in the queue")


def test_page_shows_the_position_while_waiting_and_not_after(client_alice, alice, bob, checks_worker):
    queued(bob)
    dataset = queued(alice)
    partial = client_alice.get(f"/datasets/{dataset.id}/", HTTP_HX_REQUEST="true").content.decode()
    assert 'id="queue-position"' in partial and "1 check ahead of this one" in partial
    services.check_dataset(dataset)
    assert 'id="queue-position"' not in client_alice.get(f"/datasets/{dataset.id}/").content.decode()
