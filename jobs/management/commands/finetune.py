"""`manage.py finetune`: run a fine-tuning job in this process, through the worker's own code path."""

from __future__ import annotations

import json
import socket
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from jobs import runner, services
from jobs.models import Status
from webapp.lib.errors import LayercakeError


class Command(BaseCommand):
    help = "Fine-tune a catalog model on datasets, here and now (same checks and code path as a worker job)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", required=True, help="owner of the datasets and of the result")
        parser.add_argument("--model", required=True, help="catalog model id")
        parser.add_argument("--dataset", required=True, action="append", help="dataset id (repeat for multi-task)")
        parser.add_argument("--method", required=True)
        parser.add_argument("--task", default=None)
        parser.add_argument("--hyperparameters", default="{}", help='JSON, e.g. \'{"epochs": 1}\'')

    def handle(self, *args: Any, **options: Any) -> None:
        owner = get_user_model().objects.filter(username=options["user"]).first()
        if owner is None:
            raise CommandError(f"No user named {options['user']}.")
        try:
            hyperparameters = json.loads(options["hyperparameters"])
            plan = services.plan_job(
                owner, options["model"], options["dataset"], options["method"], options["task"], hyperparameters
            )
        except json.JSONDecodeError as error:
            raise CommandError(f"--hyperparameters is not JSON: {error}") from error
        except LayercakeError as error:
            raise CommandError(error.message) from error
        # The row is created like the API does, but this process takes the job instead of a worker.
        job = services.create_job(plan, send=False)
        if not job.start(f"finetune@{socket.gethostname()}"):
            raise CommandError(f"Job {job.pk} could not start ({job.status}).")
        self.stdout.write(f"Job {job.pk}: {plan.task}/{plan.method} on {plan.base_model.name}")
        runner.execute(job)
        job.refresh_from_db()
        if job.status != Status.SUCCEEDED:
            raise CommandError(f"Job {job.pk} {job.status}: {job.error}")
        self.stdout.write(json.dumps(job.metrics, indent=2))
        assert job.result_model is not None  # a succeeded training job always has one
        self.stdout.write(f"Result: {job.result_model.name} ({job.result_model_id})")
