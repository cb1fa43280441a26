"""Checkpoints in object storage, so that a job whose worker died resumes on any other worker.

With remote storage (S3) each worker's disk is its own. Every checkpoint Trainer writes is uploaded from a
background thread while training goes on; before a run, the newest complete one in storage is fetched into the
local checkpoint folder, where the engine resumes from it. Under `jobs/<id>/checkpoints/` in storage:

    checkpoint-N/<files>          as Trainer wrote them (weights, optimizer, scheduler, RNG and trainer state)
    checkpoint-N.complete         a manifest of those files, written after all of them

Only a checkpoint with its manifest counts: an upload cut short (worker killed, storage down) is never resumed from.
Pruning and deleting remove the manifest before the files, for the same reason. On local storage the checkpoint
folder already lies inside storage (jobs.runner.job_folder) and nothing here runs.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypedDict

from django.conf import settings
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.db import connection

from jobs.models import Job, JobEvent
from jobs.training import TrainingSpec
from webapp.lib.storage import stored_bytes, stored_names, stored_path

logger = logging.getLogger(__name__)

MANIFEST_SUFFIX = ".complete"
# Seconds between tries of a failed upload (the last one repeats until it works or a newer checkpoint comes).
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
# While storage stays down, the job hears about it at most this often (the worker's log hears every try).
NOTICE_SECONDS = 300.0


def storage_is_remote() -> bool:
    """True when storage gives no local paths (S3): then checkpoints must be copied to it to outlive the worker."""
    return stored_path("") is None


def step_of(folder: Path | str) -> int:
    return int(str(folder).rsplit("-", 1)[-1])


def _checkpoint_step(name: str) -> int | None:
    """N for a name `checkpoint-N`; None for anything else."""
    suffix = name.removeprefix("checkpoint-")
    return int(suffix) if suffix != name and suffix.isdigit() else None


class ManifestEntry(TypedDict):
    """One file of a stored checkpoint, as its manifest lists it."""

    name: str  # relative to the checkpoint folder
    size_bytes: int


class CheckpointStore:
    """One job's checkpoints in storage, under `prefix`."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def _listing(self) -> tuple[list[str], list[str]]:
        try:
            return default_storage.listdir(self.prefix)
        except (FileNotFoundError, NotADirectoryError):
            return [], []

    def complete(self, files: list[str] | None = None) -> list[int]:
        """Steps of the checkpoints whose manifest is stored (among `files` of the prefix, if given), oldest first."""
        files = self._listing()[1] if files is None else files
        steps = (_checkpoint_step(name.removesuffix(MANIFEST_SUFFIX)) for name in files if name.endswith(MANIFEST_SUFFIX))
        return sorted(step for step in steps if step is not None)

    def _manifest_name(self, step: int) -> str:
        return f"{self.prefix}/checkpoint-{step}{MANIFEST_SUFFIX}"

    def _put(self, name: str, content: File) -> None:
        stored = default_storage.save(name, content)
        if stored != name:  # storage found the name taken (file_overwrite is off) and chose another
            default_storage.delete(stored)
            raise OSError(f"storage stored {name} as {stored}")

    def upload(self, folder: Path, done: set[str], stop: Callable[[], bool]) -> bool:
        """Store the checkpoint folder's files (but those in `done`, stored by an earlier try), then its manifest.

        Adds each stored file to `done`. Returns False, with no manifest written, when `stop()` turns true.
        """
        step = step_of(folder.name)
        stored_folder = f"{self.prefix}/checkpoint-{step}"
        # What a try cut short, or a killed worker's upload of this step, left behind: storage would keep it and store
        # the new files under other names, so it goes first (one listing per try, rather than a question per file).
        for name in stored_names(stored_folder):
            if name.removeprefix(f"{stored_folder}/") not in done:
                default_storage.delete(name)
        files = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
        entries = [ManifestEntry(name=name, size_bytes=(folder / name).stat().st_size) for name in files]
        for name in files:
            if name in done:
                continue
            if stop():
                return False
            with (folder / name).open("rb") as handle:
                self._put(f"{stored_folder}/{name}", File(handle))
            done.add(name)
        manifest = json.dumps({"step": step, "files": entries}).encode()
        self._put(self._manifest_name(step), ContentFile(manifest))
        return True

    def download(self, step: int, checkpoint_dir: Path) -> Path:
        """Fetch a complete checkpoint into `checkpoint_dir`/checkpoint-<step>; the folder appears whole or not at all."""
        with default_storage.open(self._manifest_name(step), "rb") as handle:
            manifest = json.loads(handle.read())
        # Not matched by checkpoint-*: neither the engine nor Trainer's rotation sees a download in progress.
        partial = checkpoint_dir / f".checkpoint-{step}.download"
        shutil.rmtree(partial, ignore_errors=True)
        for entry in manifest["files"]:
            target = partial / entry["name"]
            target.parent.mkdir(parents=True, exist_ok=True)
            with default_storage.open(f"{self.prefix}/checkpoint-{step}/{entry['name']}", "rb") as source:
                with target.open("wb") as sink:
                    shutil.copyfileobj(source, sink, 1 << 20)
            if target.stat().st_size != entry["size_bytes"]:
                raise OSError(f"checkpoint {step}: {entry['name']} came down with {target.stat().st_size} bytes")
        folder = checkpoint_dir / f"checkpoint-{step}"
        shutil.rmtree(folder, ignore_errors=True)  # a local save cut short by a kill
        partial.rename(folder)
        return folder

    def prune(self, keep: int) -> None:
        """Keep the newest `keep` complete checkpoints, as Trainer does on disk; older ones go, with any upload cut
        short before them."""
        folders, files = self._listing()
        complete = self.complete(files)
        if len(complete) <= keep:
            return
        oldest_kept = complete[-keep]
        for step in complete[:-keep]:
            default_storage.delete(self._manifest_name(step))
        for folder in folders:
            found = _checkpoint_step(folder)
            if found is not None and found < oldest_kept:
                for name in stored_names(f"{self.prefix}/{folder}"):
                    default_storage.delete(name)

    def stored_bytes(self) -> int:
        """What the checkpoints take in storage, complete or not, in one listing."""
        return stored_bytes(self.prefix)

    def delete_all(self) -> None:
        """Remove every checkpoint, manifests first."""
        names = stored_names(self.prefix)
        for name in sorted(names, key=lambda name: not name.endswith(MANIFEST_SUFFIX)):
            default_storage.delete(name)


def restore_newest(store: CheckpointStore, checkpoint_dir: Path) -> int | None:
    """Fetch the newest complete checkpoint in storage unless `checkpoint_dir` holds one as new; its step, or None."""
    from jobs.training.engine import last_complete_checkpoint

    complete = store.complete()
    if not complete:
        return None
    local = last_complete_checkpoint(checkpoint_dir)
    if local is not None and step_of(local.name) >= complete[-1]:
        return None
    store.download(complete[-1], checkpoint_dir)
    return complete[-1]


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


class CheckpointUploader:
    """Uploads checkpoints from a background thread: training never waits on storage.

    `saved` is the engine's on_checkpoint hook. It snapshots the folder by hard links, in milliseconds: Trainer
    deletes checkpoints past save_total_limit, possibly while an upload still reads one, but never rewrites a file.
    A snapshot still waiting when a newer one comes is dropped. A failed upload is retried with growing delays and
    reported through `notify(step, message)`; a newer checkpoint supersedes one that keeps failing. After each
    stored checkpoint the older ones in storage are pruned to `keep`.
    """

    def __init__(
        self,
        store: CheckpointStore,
        staging: Path,
        keep: int,
        notify: Callable[[int, str], None],
        delays: tuple[float, ...] = RETRY_DELAYS,
        name: str = "checkpoint-upload",  # the thread's, in every log line: give it the job id
    ) -> None:
        self.store, self.staging, self.keep, self.notify, self.delays = store, staging, keep, notify, delays
        self.stored: list[int] = []  # steps whose manifest went up, in order
        self._changed = threading.Condition()
        self._pending: Path | None = None
        self._closing = False
        self._failures = 0  # failed tries since the last stored checkpoint
        self._last_notice = 0.0
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def saved(self, folder: Path) -> None:
        try:
            snapshot = self.staging / folder.name
            shutil.rmtree(snapshot, ignore_errors=True)
            shutil.copytree(folder, snapshot, copy_function=_link_or_copy)
        except OSError:  # the checkpoint stays on this disk; the next one will try again
            logger.exception("%s: no snapshot of %s to upload", self._thread.name, folder)
            return
        with self._changed:
            if self._pending is not None and self._pending != snapshot:
                shutil.rmtree(self._pending, ignore_errors=True)
            self._pending = snapshot
            self._changed.notify_all()

    def close(self, timeout: float = 120.0) -> None:
        """Stop: a snapshot still waiting is dropped, an upload in progress stops after its current file."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning("%s: an upload still runs after %.0f s; leaving it", self._thread.name, timeout)
        shutil.rmtree(self.staging, ignore_errors=True)

    def _run(self) -> None:
        try:
            self.store.complete()  # opens this thread's storage client (boto3's are per thread) before training
        except Exception:
            logger.warning("%s: storage does not answer yet", self._thread.name, exc_info=True)
        try:
            while True:
                with self._changed:
                    self._changed.wait_for(lambda: self._pending is not None or self._closing)
                    if self._closing:
                        return
                    snapshot, self._pending = self._pending, None
                assert snapshot is not None
                try:
                    self._upload(snapshot)
                finally:
                    shutil.rmtree(snapshot, ignore_errors=True)
        finally:
            connection.close()  # the database connection `notify` may have opened in this thread

    def _upload(self, snapshot: Path) -> None:
        step, done = step_of(snapshot.name), set[str]()
        while True:
            try:
                if not self.store.upload(snapshot, done, stop=lambda: self._closing):
                    return
                self.stored.append(step)
                if self._failures:
                    self._tell(step, f"Checkpoint of step {step} stored after {self._failures} failed tries.", force=True)
                    self._failures = 0
                self.store.prune(self.keep)
                return
            except Exception as error:
                self._failures += 1
                delay = self.delays[min(self._failures, len(self.delays)) - 1]
                logger.warning(
                    "%s: checkpoint %d failed (try %d), retrying in %g s: %s", self._thread.name, step, self._failures, delay, error
                )
                self._tell(
                    step,
                    f"Checkpoint of step {step} not stored yet: storage answered {type(error).__name__}; "
                    f"retrying every {delay:g} s or less, training goes on.",
                    force=self._failures == 1,
                )
            with self._changed:
                if self._changed.wait_for(lambda: self._pending is not None or self._closing, timeout=delay):
                    return  # a newer checkpoint supersedes this one, or the run ended

    def _tell(self, step: int, message: str, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last_notice < NOTICE_SECONDS:
            return
        self._last_notice = now
        try:
            self.notify(step, message)
        except Exception:  # a note that cannot be written must not stop the uploads
            logger.exception("%s: checkpoint %d: could not report: %s", self._thread.name, step, message)


def remote_store(job: Job) -> CheckpointStore:
    return CheckpointStore(f"{job.storage_prefix}/checkpoints")


def worker_folder(job_id: object) -> Path:
    """A job's working folder on this machine's disk, used when storage is remote: checkpoints, artifact, uploads."""
    return Path(settings.LAYERCAKE_HOME) / "jobs" / str(job_id)


def local_job_folder(job_id: object, name: str) -> Path:
    """Where a job's `name` folder lies on this machine, not created here: inside local storage; with remote storage in
    its worker folder, from where the checkpoints are copied to the bucket."""
    return stored_path(f"jobs/{job_id}/{name}") or worker_folder(job_id) / name


def job_notes(job: Job) -> Callable[[int, str], None]:
    """Upload news as lines of the job's log (its page and /api/v1/jobs/<id>/events/), from the uploader's thread."""

    def note(step: int, message: str) -> None:
        logger.info("job %s: %s", job.pk, message)
        progress = Job.objects.filter(pk=job.pk).values_list("progress", flat=True).first() or {}
        JobEvent.objects.create(job_id=job.pk, step=step, total_steps=progress.get("total_steps") or 0, message=message[:500])

    return note


@contextmanager
def synced_checkpoints(job: Job, spec: TrainingSpec) -> Iterator[None]:
    """Around a training run with remote storage: fetch the newest complete checkpoint from storage into
    `spec.checkpoint_dir` first (unless this disk holds one as new), then upload each checkpoint the run writes."""
    if not storage_is_remote():
        yield
        return
    from jobs.training.engine import CHECKPOINTS_KEPT

    store = remote_store(job)
    notes = job_notes(job)
    fetched = restore_newest(store, Path(spec.checkpoint_dir))
    if fetched is not None:
        notes(fetched, f"Resuming from the checkpoint of step {fetched}, fetched from storage.")
    staging = Path(spec.checkpoint_dir).parent / "checkpoint-uploads"
    uploader = CheckpointUploader(
        store, staging, CHECKPOINTS_KEPT, notes, delays=RETRY_DELAYS, name=f"checkpoint-upload-{job.pk}"
    )
    spec.on_checkpoint = uploader.saved
    try:
        yield
    finally:
        spec.on_checkpoint = None
        uploader.close()


def delete_remote_checkpoints(job: Job) -> None:
    """After success the catalog holds the result: the job's checkpoints in storage can go."""
    if not storage_is_remote():
        return
    try:
        remote_store(job).delete_all()
    except Exception:  # leftovers cost space, not correctness; the job succeeded
        logger.exception("job %s: could not delete its checkpoints from storage", job.pk)
