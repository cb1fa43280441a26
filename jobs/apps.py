from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    label = "jobs"

    def ready(self) -> None:
        # Celery's worker lifecycle signals: a worker registers itself and heartbeats.
        from jobs import worker_registry  # noqa: F401
