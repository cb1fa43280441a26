"""The Celery application: configuration comes from Django settings (CELERY_*)."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import before_task_publish, worker_init
from kombu.transport import TRANSPORT_ALIASES

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
# The embedded broker writes each message whole before a worker can see it (webapp.lib.broker.AtomicChannel).
TRANSPORT_ALIASES["filesystem"] = "webapp.lib.broker:AtomicTransport"

app = Celery("layercake")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
@before_task_publish.connect
def make_broker_folders(**_: object) -> None:
    # kombu's filesystem transport expects its folders to exist, in the sender (web) as in the worker.
    from django.conf import settings

    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        for key in ("data_folder_in", "data_folder_out", "control_folder"):
            os.makedirs(settings.CELERY_BROKER_TRANSPORT_OPTIONS[key], exist_ok=True)
