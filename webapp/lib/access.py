"""The one way views reach a user's objects: others' objects do not exist (404, never 403)."""

from __future__ import annotations

from typing import Any, TypeVar

from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db.models import Model, QuerySet
from django.http import Http404

M = TypeVar("M", bound=Model)


def owned_or_404(queryset_or_model: type[M] | QuerySet[M], user: Any, pk: Any) -> M:
    """Return the object with `pk` if `user` may see it, else raise Http404.

    A model manager or queryset that defines `visible_to(user)` decides visibility
    (shared base models, for instance); otherwise the object's `owner` must be `user`.
    """
    queryset = (
        queryset_or_model._default_manager.all()
        if isinstance(queryset_or_model, type)
        else queryset_or_model
    )
    if not getattr(user, "is_authenticated", False):
        raise Http404
    if hasattr(queryset, "visible_to"):
        queryset = queryset.visible_to(user)
    else:
        queryset = queryset.filter(owner=user)
    try:
        return queryset.get(pk=pk)
    except (ObjectDoesNotExist, ValidationError, ValueError, TypeError):
        # A malformed UUID is as absent as someone else's object.
        raise Http404 from None
