"""make run prepares the embedded broker so that workers starting together cannot corrupt it (kombu race)."""

from __future__ import annotations

import json
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
