"""`manage.py ensure_login`: make sure somebody can log in on a fresh install (used by `make run`)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from webapp.accounts.services import ensure_demo_login


class Command(BaseCommand):
    help = "Create a demo user if the site has no users, and say how to log in."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000/")

    def handle(self, *args: Any, url: str, **options: Any) -> None:
        user = ensure_demo_login()
        if user is not None:
            self.stdout.write(f"Log in at {url} as demo / layercake (a demo user made for this fresh install).")
        else:
            self.stdout.write(f"Log in at {url} with your account.")
