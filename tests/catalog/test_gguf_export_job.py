"""POST export -> an `export` job -> a proven GGUF + Modelfile to download (owner only), shown on the model page."""

from __future__ import annotations

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr("jobs.services.enqueue", lambda job: None)


def run_in_process(job_id: str):  # type: ignore[no-untyped-def]
    """What a worker does with the job's message, minus the broker."""
    from jobs import runner
    from jobs.models import Job

    job = Job.objects.get(pk=job_id)
    assert job.start("test-worker@here")
    runner.execute(job)
    job.refresh_from_db()
    return job


def test_exporting_an_adapter_merges_it_proves_the_gguf_and_offers_it_to_its_owner_only(
    api_alice, api_bob, client_alice, alices_causal_adapter
):
    model_id = alices_causal_adapter.id
    response = api_alice.post(f"/api/v1/models/{model_id}/export/", {"type": "f16"}, format="json")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["kind"] == "export" and body["status"] == "queued" and body["hyperparameters"] == {"type": "f16"}
    assert api_alice.get(f"/api/v1/models/{model_id}/gguf/f16/").status_code == 404  # nothing before the proof

    job = run_in_process(body["id"])
    assert job.status == "succeeded", job.error
    proof = job.metrics["gguf_proof"]
    assert proof["passed"] and proof["output_type"] == "f16" and proof["max_abs_logit_diff"] <= proof["bound"]
    assert job.summary["gguf"]["llama_cpp"]["why"] == "llama-cpp-python not installed on this worker"

    download = api_alice.get(f"/api/v1/models/{model_id}/gguf/f16/")
    assert download.status_code == 200
    content = b"".join(download.streaming_content)
    assert job.summary["gguf"]["prefix"] == f"{alices_causal_adapter.storage_prefix}/gguf/{job.pk}"
    assert content[:4] == b"GGUF" and len(content) == int(download["Content-Length"])
    modelfile = b"".join(api_alice.get(f"/api/v1/models/{model_id}/gguf/f16/Modelfile").streaming_content).decode()
    assert modelfile.startswith(f"FROM ./{proof['file']['name']}") and 'PARAMETER stop "<|im_end|>"' in modelfile
    assert client_alice.get(f"/models/{model_id}/gguf/f16/").status_code == 200

    for url in (f"/api/v1/models/{model_id}/gguf/f16/", f"/api/v1/models/{model_id}/gguf/f16/Modelfile"):
        assert api_bob.get(url).status_code == 404
    assert api_bob.post(f"/api/v1/models/{model_id}/export/", {"type": "q8_0"}, format="json").status_code == 404
    assert api_alice.get(f"/api/v1/models/{model_id}/gguf/q8_0/").status_code == 404  # never exported

    listed = api_alice.get(f"/api/v1/models/{model_id}/").json()["gguf_exports"]
    assert listed == [{"type": "f16", "offered": True, "job": str(job.pk), "file": job.summary["gguf"]["files"][0],
                       "passed": True, "max_abs_logit_diff": proof["max_abs_logit_diff"], "bound": proof["bound"]}]
    assert client_alice.get(reverse("jobs:detail", args=[job.pk])).status_code == 200
    page = client_alice.get(f"/models/{model_id}/").content.decode()
    assert "Run it with llama.cpp or Ollama (GGUF)" in page and f"/models/{model_id}/gguf/f16/" in page
    assert 'data-mode="gguf-f16"' in page and "llama-cpp-python not installed on this worker" in page
    assert proof["prompts"][0]["prompt"] in page


def test_a_base_model_a_classifier_and_an_unknown_type_are_refused_with_a_reason(
    api_alice, causal_base, alices_classifier_adapter, alices_causal_adapter
):
    from jobs.models import Job

    base = api_alice.post(f"/api/v1/models/{causal_base.id}/export/", {"type": "f16"}, format="json")
    assert base.status_code == 400 and "base model" in base.json()["error"]
    classifier = api_alice.post(f"/api/v1/models/{alices_classifier_adapter.id}/export/", {"type": "f16"}, format="json")
    assert classifier.status_code == 400
    assert "LlamaForCausalLM" in classifier.json()["error"] and "Qwen2ForCausalLM" in classifier.json()["error"]
    k_quant = api_alice.post(f"/api/v1/models/{alices_causal_adapter.id}/export/", {"type": "q4_K_M"}, format="json")
    assert k_quant.status_code == 400 and "K-quants" in k_quant.json()["error"]
    assert api_alice.post(f"/api/v1/models/{alices_causal_adapter.id}/export/", {}, format="json").status_code == 400
    assert not Job.objects.filter(kind="export").exists()


def test_a_gguf_that_fails_its_proof_is_not_stored_and_its_evidence_is_kept(api_alice, client_alice, alices_causal_adapter, monkeypatch):
    from django.core.files.storage import default_storage

    from webapp.catalog import gguf_export

    monkeypatch.setitem(gguf_export.LOGIT_BOUNDS, "q8_0", 1e-9)  # no q8_0 file can meet this bound
    job_id = api_alice.post(f"/api/v1/models/{alices_causal_adapter.id}/export/", {"type": "q8_0"}, format="json").json()["id"]
    job = run_in_process(job_id)
    assert job.status == "failed" and job.failure_reason == "invalid"
    assert "was not kept" in job.error
    assert job.metrics["gguf_proof"]["passed"] is False
    assert not default_storage.exists(f"{alices_causal_adapter.storage_prefix}/gguf/{job.pk}")
    assert api_alice.get(f"/api/v1/models/{alices_causal_adapter.id}/gguf/q8_0/").status_code == 404
    page = client_alice.get(f"/models/{alices_causal_adapter.id}/").content.decode()
    assert "not offered" in page and 'data-mode="gguf-q8_0"' not in page
    retried = api_alice.post(f"/api/v1/jobs/{job_id}/retry/")
    assert retried.status_code == 201 and retried.json()["kind"] == "export"
    assert retried.json()["hyperparameters"] == {"type": "q8_0"}


def test_export_button_starts_the_job_from_the_page(client_alice, alices_causal_adapter):
    from jobs.models import Job

    page = client_alice.get(f"/models/{alices_causal_adapter.id}/").content.decode()
    assert "Export to GGUF" in page
    response = client_alice.post(f"/models/{alices_causal_adapter.id}/export/", {"type": "f16"})
    assert response.status_code == 302
    job = Job.objects.get(base_model=alices_causal_adapter, kind="export")
    assert job.hyperparameters == {"type": "f16"} and job.queue == "cpu"
