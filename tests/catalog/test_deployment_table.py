"""The deployment table: the three ways to run an adapter, measured in fresh processes, shown as figures."""

from __future__ import annotations

import pytest

from webapp.catalog import deployment, profiling, registering
from webapp.lib.errors import LayercakeError

pytestmark = pytest.mark.django_db


@pytest.fixture
def measured_once(monkeypatch):  # type: ignore[no-untyped-def]
    """Each way measured once. A tiny model's latencies beside the other test process are noise, and a full model
    measured slower than the adapter would be measured again, twice at most, two fresh processes each time; those
    repeats are tested with scripted figures (test_deployment_under_load.py)."""
    monkeypatch.setattr(profiling, "MAX_REPEATS", 0)


def test_adapter_profile_measures_all_three_ways_with_shared_base_flags(alices_causal_adapter, causal_base, client_alice, measured_once):
    state = deployment.profile_deployment(alices_causal_adapter)
    assert state["status"] == "done", state
    rows = {row["mode"]: row for row in state["modes"]}
    assert set(rows) == {"full_model", "merged_at_load", "adapter_at_inference"}
    for row in rows.values():
        assert row["applicable"] and row["load_seconds"] > 0 and row["latency_ms"] > 0 and row["unit"] == "token", row
    assert rows["full_model"]["base_files_shared"] is False and rows["full_model"]["base_memory_shared"] is False
    assert rows["merged_at_load"]["base_files_shared"] is True and rows["merged_at_load"]["base_memory_shared"] is False
    assert rows["adapter_at_inference"]["base_memory_shared"] is True
    assert rows["adapter_at_inference"]["storage_bytes"] == causal_base.size_bytes + alices_causal_adapter.size_bytes
    assert rows["adapter_at_inference"]["own_storage_bytes"] == alices_causal_adapter.size_bytes
    assert rows["full_model"]["own_storage_bytes"] > alices_causal_adapter.size_bytes
    alices_causal_adapter.refresh_from_db()
    assert alices_causal_adapter.deployment["status"] == "done"
    page = client_alice.get(f"/models/{alices_causal_adapter.id}/").content.decode()
    assert page.count('<tr data-mode="') == 3 and "Latency per token" in page


@pytest.mark.slow
def test_classifier_latency_is_per_example(alices_classifier_adapter, measured_once):
    state = deployment.profile_deployment(alices_classifier_adapter)
    assert state["status"] == "done", state
    assert state["unit"] == "example"


def test_a_base_model_has_no_deployment_table(causal_base):
    with pytest.raises(LayercakeError, match="derived model"):
        deployment.request_deployment_profile(causal_base)


def test_registering_a_derived_model_queues_its_profile_after_commit(causal_base, causal_adapter_dir, alice, monkeypatch, settings, django_capture_on_commit_callbacks):
    from webapp.catalog import tasks

    settings.LAYERCAKE_PROFILE_DERIVED_MODELS = True
    sent: list[str] = []
    monkeypatch.setattr(tasks.profile_deployment, "apply_async", lambda args, queue, task_id: sent.extend(args))
    with django_capture_on_commit_callbacks(execute=True):
        adapter = registering.register_derived_model(causal_adapter_dir, name="x", kind="adapter", parent=causal_base, owner=alice, metrics={}, task="sft")
    assert sent == [str(adapter.id)]
    adapter.refresh_from_db()
    assert adapter.deployment["status"] == "queued"
