"""A job asking for several processes goes only where a worker can host them all: a GPU each, or a core each."""

from __future__ import annotations

import pytest

from jobs import services
from jobs.models import Worker
from jobs.worker_registry import register
from webapp.lib.errors import LayercakeError

pytestmark = pytest.mark.django_db

GiB = 2**30


def gpu_worker(name: str, gpus: int) -> Worker:
    # As jobs.worker_registry registers it: one device per GPU, and the gpu-xN queues it can host.
    queues = ["gpu"] + [f"gpu-x{n}" for n in range(2, gpus + 1)]
    device = {"kind": "cuda", "name": "NVIDIA H100", "memory_bytes": 80 * GiB, "capabilities": {"cuda": True, "bf16": True}}
    return Worker.objects.create(hostname=name, queues=queues, devices=[device] * gpus)


def cpu_worker(name: str, cores: int) -> Worker:
    return Worker.objects.create(
        hostname=name, queues=["cpu"], devices=[{"kind": "cpu", "memory_bytes": 32 * GiB, "cores": cores}]
    )


def plan(owner, model, dataset, processes: int) -> services.JobPlan:  # type: ignore[no-untyped-def]
    return services.plan_job(owner, model.id, [dataset.id], "lora", hyperparameters={"num_processes": processes})


def test_a_two_gpu_job_goes_to_the_queue_of_workers_with_two_gpus(alice, tiny_lm, sft_data):
    gpu_worker("one@box", 1)
    gpu_worker("two@box", 2)
    job = plan(alice, tiny_lm, sft_data, 2)
    assert (job.queue, job.estimate["device"], job.hyperparameters["num_processes"]) == ("gpu-x2", "cuda", 2)
    assert plan(alice, tiny_lm, sft_data, 1).queue == "gpu"


def test_a_job_wanting_more_gpus_than_any_worker_has_is_refused_with_what_to_do(alice, tiny_lm, sft_data):
    gpu_worker("one@box", 1)
    with pytest.raises(LayercakeError, match=r"asks for 2 processes, one per GPU, but the largest gpu worker online has 1 GPU\."):
        plan(alice, tiny_lm, sft_data, 2)


def test_cpu_processes_go_up_to_a_workers_cores(alice, tiny_lm, sft_data):
    cpu_worker("small@box", 2)
    assert plan(alice, tiny_lm, sft_data, 2).queue == "cpu"
    with pytest.raises(LayercakeError, match=r"asks for 4 processes, one per core, .* has 2 cores"):
        plan(alice, tiny_lm, sft_data, 4)


def test_with_no_worker_online_the_job_waits_with_a_warning(alice, tiny_lm, sft_data):
    job = plan(alice, tiny_lm, sft_data, 2)
    assert job.queue == "cpu"
    assert any("No cpu worker is online" in warning for warning in job.warnings)


def test_a_registered_cpu_worker_offers_a_process_per_core():
    from jobs.training.launch import cpu_cores

    worker = register("cpu@box", ["cpu"])
    assert (worker.process_slots("cpu"), worker.gpu_count) == (cpu_cores(), 0)
