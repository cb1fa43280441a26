"""The background check of a dataset, on the checks queue: a thin shell over services.check_dataset."""

from __future__ import annotations

import logging

from celery import shared_task

from webapp.datasets import services
from webapp.datasets.models import Dataset

log = logging.getLogger(__name__)

# A check streams the file once; an hour covers the 2 GB upload limit many times over.
CHECK_SOFT_LIMIT_SECONDS = 3600


@shared_task(acks_late=True, soft_time_limit=CHECK_SOFT_LIMIT_SECONDS, time_limit=CHECK_SOFT_LIMIT_SECONDS + 120)
def check_dataset(dataset_id: str) -> None:
    dataset = Dataset.objects.filter(pk=dataset_id).first()
    if dataset is None:
        log.info("dataset %s: deleted before its check ran", dataset_id)
        return
    dataset = services.check_dataset(dataset)
    log.info("dataset %s: %s", dataset_id, dataset.status)
