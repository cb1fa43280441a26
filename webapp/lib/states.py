"""State transitions of a row with a `status`: one conditional UPDATE, so two workers cannot both win."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from django.db import models


def move(row: models.Model, sources: Collection[str], **changes: Any) -> bool:
    """Apply `changes` to the row only if its status is one of `sources`; True when this call moved it.

    As healthchecks' `sendalerts` does: `q.update(...)` matched no row, so another worker got there first.
    The instance is kept in step with the table: on success it takes the changes (fields given as
    expressions, `F("attempt") + 1` say, are read back); on failure it takes the status found, if the row
    is still there.
    """
    rows = type(row)._default_manager.filter(pk=row.pk)
    moved = rows.filter(status__in=list(sources)).update(**changes) == 1
    if not moved:
        found = rows.values_list("status", flat=True).first()
        if found is not None:
            row.status = found  # type: ignore[attr-defined]  # every row moved here has a status
        return False
    computed = [name for name, value in changes.items() if hasattr(value, "resolve_expression")]
    for name, value in changes.items():
        if name not in computed:
            setattr(row, name, value)
    if computed:
        row.refresh_from_db(fields=computed)
    return True
