"""The embedded broker (kombu's filesystem transport) prepared before any worker starts.

kombu 5.7's filesystem transport creates an exchange file with "wb" when it finds none: two workers
starting at the same moment both truncate it and both write, leaving invalid JSON that every later worker
start dies on (`JSONDecodeError`), for good, since the file lives under LAYERCAKE_HOME. An existing file is
updated under a lock, so creating every exchange file before the workers start (and resetting an unreadable
one, while no worker runs) removes the race. `make run` does this first (`manage.py prepare_broker`).
"""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings

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
