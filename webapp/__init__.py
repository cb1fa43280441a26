"""Layercake's Django project package; the Celery app is loaded with it so shared tasks bind to it."""

from webapp.celery import app as celery_app

__all__ = ["celery_app"]
