"""The embedded broker (kombu's filesystem transport) prepared before any worker starts.

kombu 5.7's filesystem transport creates an exchange file with "wb" when it finds none: two workers
starting at the same moment both truncate it and both write, leaving invalid JSON that every later worker
start dies on (`JSONDecodeError`), for good, since the file lives under LAYERCAKE_HOME. An existing file is
updated under a lock, so creating every exchange file before the workers start (and resetting an unreadable
one, while no worker runs) removes the race. `make run` does this first (`manage.py prepare_broker`).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from time import monotonic
from typing import Any

from django.conf import settings
from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

# The queues' own exchanges, and the remote-control exchange every worker binds to.
EXCHANGES = ("cpu", "gpu", "checks", "inference", "celery.pidbox")


def prepare_filesystem_broker() -> list[str]:
    """Create missing exchange files and reset unreadable ones; returns the files it reset. Call with no worker up."""
    if not settings.CELERY_BROKER_URL.startswith("filesystem://"):
        return []
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    for key in ("data_folder_in", "data_folder_out", "control_folder"):
        Path(options[key]).mkdir(parents=True, exist_ok=True)
    control = Path(options["control_folder"])
    reset = []
    for name in EXCHANGES:
        table = control / f"{name}.exchange"
        if table.exists():
            try:
                if isinstance(json.loads(table.read_bytes() or b"null"), list):
                    continue
            except ValueError:
                pass
            reset.append(table.name)
        table.write_text("[]")  # the workers bind themselves again as they start
    return reset


class AtomicChannel(filesystem.Channel):
    """kombu's filesystem channel, with each message written whole before it appears in its queue's folder.

    kombu 5.7 opens the message file under its final name, then locks and writes it; a consumer polling at that
    moment moves the still-empty file away and dies on it (`Unrecoverable error: JSONDecodeError`, seen when two
    test processes shared the machine). Here the message is written under a name no queue matches, then renamed.
    """

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # `_get` takes the names whose part after the first dot is "<queue>.msg": this one has none before it.
        partial = os.path.join(self.data_folder_out, f".{name}.part")
        try:
            with open(partial, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as error:
            raise ChannelError(f"Cannot add file {final!r} to directory") from error


class AtomicTransport(filesystem.Transport):
    Channel = AtomicChannel
