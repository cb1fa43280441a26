"""make run prepares the embedded broker so that workers starting together cannot corrupt it (kombu race)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from django.conf import settings

from webapp.lib.broker import EXCHANGES, prepare_filesystem_broker


def control() -> Path:
    return Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["control_folder"])


@pytest.fixture
def settings_filesystem_broker(settings, tmp_path):  # the embedded broker, whatever CI's broker is
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(tmp_path / "queue"), "data_folder_out": str(tmp_path / "queue"),
        "control_folder": str(tmp_path / "control"),
    }


def test_exchange_files_exist_before_workers_start_and_a_corrupted_one_is_reset(settings_filesystem_broker):
    corrupted = control() / "celery.pidbox.exchange"
    control().mkdir(parents=True, exist_ok=True)
    corrupted.write_text('[["", "", "checks@vm.celery.pidbox"]]"]]')  # what two racing workers left behind
    healthy = control() / "cpu.exchange"
    healthy.write_text(json.dumps([["cpu", "", "cpu"]]))
    assert prepare_filesystem_broker() == ["celery.pidbox.exchange"]
    assert json.loads(corrupted.read_text()) == []
    assert json.loads(healthy.read_text()) == [["cpu", "", "cpu"]]  # a readable table is kept
    assert all((control() / f"{name}.exchange").exists() for name in EXCHANGES)
    assert prepare_filesystem_broker() == []


def test_a_message_appears_in_its_queue_only_once_written_whole(tmp_path, monkeypatch):
    from kombu import Connection

    from webapp.lib import broker

    queue = tmp_path / "queue"
    queue.mkdir()
    seen_while_writing: list[list[str]] = []

    def dumps_and_look(payload):  # type: ignore[no-untyped-def]
        seen_while_writing.append(sorted(name for name in os.listdir(queue) if name.endswith(".cpu.msg")))
        return json.dumps(payload)

    monkeypatch.setattr(broker, "dumps", dumps_and_look)
    options = {"data_folder_in": str(queue), "data_folder_out": str(queue), "control_folder": str(tmp_path)}
    with Connection("filesystem://", transport_options=options) as connection:
        assert isinstance(connection.transport, broker.AtomicTransport)  # what webapp.celery registers
        channel = connection.default_channel
        channel._put("cpu", {"body": "hello"})
        assert seen_while_writing == [[]]  # nothing a worker could take before the message was whole
        assert [name for name in os.listdir(queue) if name.endswith(".part")] == []
        assert channel._get("cpu") == {"body": "hello"}
