"""`manage.py ensure_login`: make sure somebody can log in on a fresh install (used by `make run`)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from webapp.accounts.services import ensure_first_login


class Command(BaseCommand):
    help = "On a site with no users, create an administrator with a random password and print it, once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000/")
        parser.add_argument("--username", default="admin")

    def handle(self, *args: Any, url: str, username: str, **options: Any) -> None:
        made = ensure_first_login(username)
        if made is None:
            self.stdout.write(f"Log in at {url} with your account.")
            return
        _, password = made
        self.stdout.write(
            f"Log in at {url} as {username} / {password}\n"
            "This password is shown only now: change it on the Account page. "
            "Forgot it? `.venv/bin/python manage.py changepassword " + username + "`."
        )
