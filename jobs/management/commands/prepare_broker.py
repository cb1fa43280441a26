"""`manage.py prepare_broker`: make the embedded broker safe for workers that start together (bin/run)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from webapp.lib.broker import prepare_filesystem_broker


class Command(BaseCommand):
    help = "Create the filesystem broker's exchange files before the workers start; reset unreadable ones."

    def handle(self, *args: Any, **options: Any) -> None:
        for name in prepare_filesystem_broker():
            self.stdout.write(f"Reset the unreadable broker file {name} (left by workers that started together).")
