"""`manage.py api_token USERNAME`: creates the user if needed and prints a new API key on the last line."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from webapp.accounts.services import api_token_for


class Command(BaseCommand):
    help = (
        "Print a new API token for USERNAME (the user is created, without a usable password, if missing). "
        "Only its digest is stored: the key is shown this once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        key, created = api_token_for(username)
        if created:
            self.stdout.write(f"Created user {username} (no password: set one with `manage.py changepassword`).")
        self.stdout.write("Use it as the header `Authorization: Token <key>`; it is shown only now. Key:")
        self.stdout.write(key)
