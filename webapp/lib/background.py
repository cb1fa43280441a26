"""Sending background work: once the transaction commits, with the task id known up front, and a broker
failure handed back to the caller to record on its object instead of raised into the request."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from celery import Task
from django.db import transaction

logger = logging.getLogger(__name__)


def send_after_commit(
    task: Task,
    args: Sequence[Any],
    *,
    queue: str | None = None,
    on_failure: Callable[[str], None] | None = None,
) -> str:
    """Send `task(*args)` when the current transaction commits (at once outside one); return its task id.

    The id is chosen here so the caller stores it with its row in the same transaction: a message that
    arrives before the row is visible, or a row whose task id was never saved, cannot happen. If the broker
    is unreachable the message is not sent and `on_failure(reason)` records that on the object (the row is
    already committed; raising would turn the request into a 500 and leave the object waiting forever).
    The work is never run inline instead.
    """
    task_id = str(uuid.uuid4())
    options: dict[str, Any] = {"task_id": task_id}
    if queue is not None:  # otherwise CELERY_TASK_ROUTES decides
        options["queue"] = queue

    def send() -> None:
        try:
            task.apply_async(args=list(args), **options)
        except Exception as error:  # kombu's OperationalError, a refused connection, a full disk under the broker
            logger.exception("task %s %s(%s): could not be sent", task_id, task.name, ", ".join(map(str, args)))
            if on_failure is not None:
                on_failure(f"{type(error).__name__}: {error}")

    transaction.on_commit(send)
    return task_id
