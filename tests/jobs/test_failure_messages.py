"""An unexpected failure tells the user what broke without leaking tracebacks or server paths (issue 10)."""

from __future__ import annotations

import pytest

from jobs import runner, services
from jobs.models import FailureReason, Status

pytestmark = pytest.mark.django_db


def test_an_unexpected_error_is_stored_without_traceback_or_server_paths(alice, tiny_lm, sft_data, monkeypatch, api_alice):
    import jobs.training

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("could not open /srv/layercake/var/files/datasets/abc/normalized.parquet for reading\nmore")

    monkeypatch.setattr(jobs.training, "train", broken)
    job = services.create_job(services.plan_job(alice, tiny_lm.id, [sft_data.id], "lora"), send=False)
    assert job.start("worker-a")
    runner.execute(job)
    job.refresh_from_db()
    assert job.status == Status.FAILED and job.failure_reason == FailureReason.ERROR
    assert job.error.startswith("RuntimeError: could not open …/normalized.parquet for reading")
    assert "Traceback" not in job.error and "/srv" not in job.error and "more" not in job.error
    assert str(job.pk) in job.error
    assert "Traceback" not in api_alice.get(f"/api/v1/jobs/{job.pk}/").json().get("error", "")


def test_a_dataset_whose_checked_copy_is_gone_is_refused_at_submit_not_at_run(alice, tiny_lm, sft_data):
    from django.core.files.storage import default_storage

    from webapp.lib.errors import LayercakeError

    for name in sft_data.normalized_files().values():
        default_storage.delete(name)
    with pytest.raises(LayercakeError, match="lost its checked copy in storage"):
        services.plan_job(alice, tiny_lm.id, [sft_data.id], "lora")
