"""Checkpoints in object storage (a real S3 server, moto's): complete only once their manifest is stored, uploaded
without holding training up, retried through an outage that the job's log reports, pruned as on disk."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from storages.backends.s3 import S3Storage

from jobs import checkpoint_store
from jobs.checkpoint_store import CheckpointStore, CheckpointUploader, restore_newest, synced_checkpoints
from jobs.models import Job, Status
from jobs.training import Hyperparameters, TrainingSpec
from tests.conftest import wait_for
from webapp.lib.storage import stored_names

# Trainer's files in a checkpoint of a LoRA run; the store treats them alike, whatever they hold.
TRAINER_FILES = ("adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json")


@pytest.fixture
def remote(s3_storage: None) -> CheckpointStore:
    """Storage is a fresh S3 bucket (tests/conftest.py)."""
    assert checkpoint_store.storage_is_remote()
    return CheckpointStore("jobs/test/checkpoints")


@pytest.fixture
def outage(monkeypatch: pytest.MonkeyPatch, remote: CheckpointStore) -> dict[str, int]:
    """S3 unreachable for the next `state["writes"]` file writes, as boto3 reports it (for the files of checkpoint
    `state["step"]` alone, when that is set)."""
    state = {"writes": 0, "step": 0}
    put = S3Storage._save

    def failing_put(storage: S3Storage, name: str, content: Any) -> str:
        if state["writes"] > 0 and (not state["step"] or f"checkpoint-{state['step']}" in name):
            state["writes"] -= 1
            raise EndpointConnectionError(endpoint_url="http://s3.example:9000")
        return put(storage, name, content)

    monkeypatch.setattr(S3Storage, "_save", failing_put)
    return state


def write_checkpoint(checkpoint_dir: Path, step: int) -> Path:
    folder = checkpoint_dir / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    for name in TRAINER_FILES:
        (folder / name).write_bytes(os.urandom(2048) if name != "trainer_state.json" else json.dumps({"global_step": step}).encode())
    return folder


def same_files(left: Path, right: Path) -> bool:
    return {p.name: p.read_bytes() for p in left.iterdir()} == {p.name: p.read_bytes() for p in right.iterdir()}


def uploader(store: CheckpointStore, tmp_path: Path, notes: list[str] | None = None, **options: Any) -> CheckpointUploader:
    record = notes if notes is not None else []
    return CheckpointUploader(store, tmp_path / "staging", 2, lambda step, message: record.append(message), **options)


def test_an_upload_cut_short_is_never_resumed_from(remote: CheckpointStore, tmp_path: Path) -> None:
    older, newer = write_checkpoint(tmp_path / "a", 3), write_checkpoint(tmp_path / "a", 6)
    assert remote.upload(older, set(), stop=lambda: False)
    stored: set[str] = set()
    assert not remote.upload(newer, stored, stop=lambda: len(stored) == 2)  # the worker died after two files
    assert remote.complete() == [3]

    resumed_dir = tmp_path / "b"
    resumed_dir.mkdir()
    assert restore_newest(remote, resumed_dir) == 3
    assert sorted(p.name for p in resumed_dir.iterdir()) == ["checkpoint-3"]
    assert same_files(resumed_dir / "checkpoint-3", older)


def test_a_newer_checkpoint_on_this_disk_is_not_replaced(remote: CheckpointStore, tmp_path: Path) -> None:
    assert remote.upload(write_checkpoint(tmp_path / "a", 3), set(), stop=lambda: False)
    local = write_checkpoint(tmp_path / "b", 5)
    assert restore_newest(remote, tmp_path / "b") is None
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [local.name]


def test_storage_keeps_as_many_checkpoints_as_trainer_keeps_on_disk(remote: CheckpointStore, tmp_path: Path) -> None:
    uploads = uploader(remote, tmp_path)
    for step in (2, 4, 6, 8):
        uploads.saved(write_checkpoint(tmp_path / "run", step))
        wait_for(lambda step=step: step in uploads.stored, timeout=20, interval=0.02, message=f"checkpoint {step} not stored")  # type: ignore[misc]
    uploads.close()
    assert remote.complete() == [6, 8]
    assert {name.split("/")[3].removesuffix(".complete") for name in stored_names(remote.prefix)} == {"checkpoint-6", "checkpoint-8"}
    assert not (tmp_path / "staging").exists()


def test_the_hook_returns_at_once_while_storage_is_slow(remote: CheckpointStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    put = S3Storage._save

    def slow_put(storage: S3Storage, name: str, content: Any) -> str:
        time.sleep(0.5 if name.endswith(TRAINER_FILES[0]) else 0)
        return put(storage, name, content)

    monkeypatch.setattr(S3Storage, "_save", slow_put)
    uploads = uploader(remote, tmp_path)
    folder = write_checkpoint(tmp_path / "run", 2)
    started = time.perf_counter()
    uploads.saved(folder)
    assert time.perf_counter() - started < 0.1
    # Trainer rotates old checkpoints away while an upload may still read them: the snapshot keeps the files.
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    wait_for(lambda: uploads.stored == [2], timeout=20, interval=0.02, message="checkpoint not stored")
    uploads.close()
    restore_newest(remote, tmp_path / "restored")
    assert sorted(p.name for p in (tmp_path / "restored" / "checkpoint-2").iterdir()) == sorted(TRAINER_FILES)


def test_an_outage_is_retried_and_the_checkpoint_is_complete_only_after_it(
    remote: CheckpointStore, outage: dict[str, int], tmp_path: Path
) -> None:
    notes: list[str] = []
    uploads = uploader(remote, tmp_path, notes, delays=(0.05,))
    outage["writes"] = 3
    uploads.saved(write_checkpoint(tmp_path / "run", 4))
    wait_for(lambda: uploads.stored == [4], timeout=20, interval=0.02, message="checkpoint not stored after the outage")
    uploads.close()
    assert remote.complete() == [4]
    assert "not stored yet: storage answered EndpointConnectionError" in notes[0]
    assert notes[-1] == "Checkpoint of step 4 stored after 3 failed tries."
    restore_newest(remote, tmp_path / "restored")
    assert same_files(tmp_path / "restored" / "checkpoint-4", tmp_path / "run" / "checkpoint-4")


def test_a_newer_checkpoint_supersedes_one_that_keeps_failing(
    remote: CheckpointStore, outage: dict[str, int], tmp_path: Path
) -> None:
    uploads = uploader(remote, tmp_path, delays=(0.2,))
    # Checkpoint 4 never gets through; 8, saved while 4 still retries, takes its place.
    outage.update(writes=10**6, step=4)
    uploads.saved(write_checkpoint(tmp_path / "run", 4))
    time.sleep(0.3)
    uploads.saved(write_checkpoint(tmp_path / "run", 8))
    wait_for(lambda: uploads.stored == [8], timeout=20, interval=0.02, message="the newer checkpoint was not stored")
    uploads.close()
    assert remote.complete() == [8]


@pytest.mark.django_db(transaction=True)
def test_an_outage_is_reported_on_the_job_and_never_fails_it(
    remote: CheckpointStore, outage: dict[str, int], alice: Any, api_alice: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoint_store, "RETRY_DELAYS", (0.05,))
    job = Job.objects.create(owner=alice, method="lora", task="sft", status=Status.RUNNING)
    checkpoint_dir = tmp_path / "checkpoints"
    spec = TrainingSpec(tmp_path, "sft", "lora", [], Hyperparameters(), tmp_path / "artifact", checkpoint_dir)
    outage["writes"] = 2
    with synced_checkpoints(job, spec):
        assert spec.on_checkpoint is not None
        spec.on_checkpoint(write_checkpoint(checkpoint_dir, 5))  # what the engine does as Trainer saves
        wait_for(lambda: checkpoint_store.remote_store(job).complete() == [5], timeout=20, interval=0.02, message="not stored")
    assert spec.on_checkpoint is None

    events = api_alice.get(f"/api/v1/jobs/{job.pk}/events/").json()
    messages = [event["message"] for event in events]
    assert any("Checkpoint of step 5 not stored yet" in message for message in messages), messages
    assert "Checkpoint of step 5 stored after 2 failed tries." in messages
    assert all(event["step"] == 5 for event in events)
    job.refresh_from_db()
    assert job.status == Status.RUNNING and not job.error

    # On another worker's empty disk, the run starts from the stored checkpoint.
    other_disk = tmp_path / "other" / "checkpoints"
    with synced_checkpoints(job, TrainingSpec(tmp_path, "sft", "lora", [], Hyperparameters(), tmp_path / "o", other_disk)):
        assert same_files(other_disk / "checkpoint-5", checkpoint_dir / "checkpoint-5")
    checkpoint_store.delete_remote_checkpoints(job)
    assert stored_names(checkpoint_store.remote_store(job).prefix) == []
