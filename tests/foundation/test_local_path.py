"""Remote storage (S3) has no local paths: files are downloaded once into the cache, the same bytes."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from tests.catalog.conftest import build_tiny_bert
from webapp.catalog import importing
from webapp.lib.storage import local_path


class RemoteLikeStorage:
    """The configured storage, minus local paths: what S3Storage looks like to our code."""

    def __init__(self, inner: object) -> None:
        self.inner = inner

    def path(self, name: str) -> str:
        raise NotImplementedError("This backend doesn't support absolute paths.")

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


@pytest.fixture
def remote_storage(monkeypatch):  # type: ignore[no-untyped-def]
    remote = RemoteLikeStorage(default_storage)
    monkeypatch.setattr("webapp.lib.storage.default_storage", remote)
    monkeypatch.setattr("webapp.catalog.storing.default_storage", remote)


def test_local_storage_hands_back_the_stored_file(tmp_path):
    name = default_storage.save("probe/local.txt", ContentFile(b"layer"))
    assert local_path(name, tmp_path / "unused.txt").read_bytes() == b"layer"
    assert not (tmp_path / "unused.txt").exists()


def test_remote_storage_is_downloaded_once(tmp_path, remote_storage):
    name = default_storage.save("probe/remote.txt", ContentFile(b"cake"))
    copy = local_path(name, tmp_path / "copy" / "remote.txt")
    assert copy.read_bytes() == b"cake"
    first_mtime = copy.stat().st_mtime_ns
    assert local_path(name, tmp_path / "copy" / "remote.txt").stat().st_mtime_ns == first_mtime


@pytest.mark.django_db
def test_a_model_in_remote_storage_loads_from_the_cache(tmp_path, remote_storage):
    from transformers import AutoModel

    model = importing.import_base_model(str(build_tiny_bert(tmp_path / "bert")))
    folder = model.local_dir()
    assert (folder / ".complete").exists()
    assert sum(p.numel() for p in AutoModel.from_pretrained(folder).parameters()) == model.parameter_count
