"""In a real browser: drop a file on the Datasets page, watch it upload, and see its profile."""

from __future__ import annotations

import threading

import pytest

from webapp.datasets import services
from webapp.datasets.models import Dataset, Status

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def check_in_background(stop: threading.Event) -> None:
    """Stands in for the worker: the browser test is about the pages, the worker has its own test."""
    from django.db import connection

    try:
        while not stop.is_set():
            for dataset in Dataset.objects.filter(status=Status.UPLOADED):
                services.check_dataset(dataset)
            stop.wait(0.3)
    finally:
        connection.close()


@pytest.fixture
def checker(monkeypatch):  # type: ignore[no-untyped-def]
    from webapp.datasets import tasks

    # No broker message: the thread below finds uploaded datasets by itself.
    monkeypatch.setattr(tasks.check_dataset, "apply_async", lambda *args, **kwargs: None)
    stop = threading.Event()
    thread = threading.Thread(target=check_in_background, args=(stop,), daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(timeout=10)


DROP_FILE = """({name, content}) => {
  const transfer = new DataTransfer();
  transfer.items.add(new File([content], name, {type: "text/csv"}));
  document.getElementById("dropzone").dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
}"""


def test_dropping_a_file_uploads_it_and_the_page_shows_the_profile(page_alice, checker):
    page = page_alice
    page.goto("/datasets/")
    csv = "text,label\n" + "".join(f"review number {i},{'pos' if i % 3 else 'neg'}\n" for i in range(300))
    page.evaluate(DROP_FILE, {"name": "reviews.csv", "content": csv})
    assert "reviews.csv" in page.text_content("#dropzone-file")
    page.fill("input[name=name]", "Reviews")
    page.click("#upload-button")
    page.wait_for_url("**/datasets/*-*/")
    page.wait_for_selector("#dataset-status:has-text('Ready')", timeout=30_000)
    page.wait_for_selector("#dataset-profile")
    assert page.text_content("#dataset-rows").strip().startswith("300")
    assert "pos" in page.text_content("#dataset-profile") and "neg" in page.text_content("#dataset-profile")


def test_dropping_a_broken_file_shows_the_error_on_the_page(page_alice):
    page = page_alice
    page.goto("/datasets/")
    page.set_input_files("input[name=file]", files=[{"name": "model.pkl", "mimeType": "application/octet-stream", "buffer": b"\x80\x04K\x01."}])
    page.click("#upload-button")
    page.wait_for_selector("#upload-status.upload-error")
    assert "Unsupported file type .pkl" in page.text_content("#upload-status")
    assert page.is_visible("#upload-progress")
