"""API tokens were stored in plaintext (DRF's authtoken); keep every existing key working as a knox digest."""

from __future__ import annotations

from typing import Any

from django.db import migrations


def hash_plaintext_tokens(apps: Any, schema_editor: Any) -> None:
    from knox.crypto import hash_token
    from knox.settings import CONSTANTS

    plaintext = apps.get_model("authtoken", "Token")
    hashed = apps.get_model("knox", "AuthToken")
    for token in plaintext.objects.all():
        hashed(
            digest=hash_token(token.key),
            token_key=token.key[: CONSTANTS.TOKEN_KEY_LENGTH],
            user_id=token.user_id,
            expiry=None,
        ).save()
    plaintext.objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("authtoken", "0004_alter_tokenproxy_options"),
        ("knox", "0009_extend_authtoken_field"),
    ]

    operations = [migrations.RunPython(hash_plaintext_tokens, migrations.RunPython.noop)]
