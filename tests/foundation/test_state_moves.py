"""One conditional transition for every state machine (webapp.lib.states.move): one mover wins, the other
learns where the row is; expressions are read back; the instance never claims what the table does not hold."""

from __future__ import annotations

import pytest
from django.db.models import F

from webapp.lib.states import move
from webapp.playground.models import PlaygroundRun, Status

pytestmark = pytest.mark.django_db


def test_of_two_copies_of_one_row_only_the_first_moves_it(alice):
    run = PlaygroundRun.objects.create(owner=alice, prompt="Hello", answers=[])
    other = PlaygroundRun.objects.get(pk=run.pk)  # a second delivery of the same message
    assert move(run, {Status.QUEUED}, status=Status.RUNNING, worker="first")
    assert not move(other, {Status.QUEUED}, status=Status.RUNNING, worker="second")
    assert other.status == Status.RUNNING and other.worker == ""  # where the row is; the loser's change not applied
    assert PlaygroundRun.objects.get(pk=run.pk).worker == "first"


def test_a_move_takes_its_changes_and_reads_expressions_back(alice):
    run = PlaygroundRun.objects.create(owner=alice, prompt="Hello", answers=[])
    assert move(run, {Status.QUEUED}, status=Status.RUNNING, sends=F("sends") + 2)
    assert run.status == Status.RUNNING and run.sends == 2


def test_a_row_deleted_meanwhile_is_not_moved_and_nothing_raises(alice):
    run = PlaygroundRun.objects.create(owner=alice, prompt="Hello", answers=[])
    PlaygroundRun.objects.filter(pk=run.pk).delete()
    assert not move(run, {Status.QUEUED}, status=Status.FAILED)
    assert run.status == Status.QUEUED
