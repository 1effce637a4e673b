"""``spec.baseModel.ggufFile`` names a file inside the model's directory. It was joined to the
directory unchecked, so '../x.gguf' or an absolute path loaded a GGUF file from anywhere on the
machine (or pod), outside the volume the model's URI was confined to."""

from __future__ import annotations

import pytest

from tuneline_workloads import models
from tuneline_workloads.models import ModelSourceError, resolve_model_dir


@pytest.fixture
def volume(tmp_path, monkeypatch):
    base = tmp_path / "vol" / "base"
    base.mkdir(parents=True)
    (base / "a.gguf").write_bytes(b"GGUF")
    (base / "b.gguf").write_bytes(b"GGUF")
    (tmp_path / "outside.gguf").write_bytes(b"GGUF")
    loaded = []
    monkeypatch.setattr(models, "gguf_to_hf", lambda gguf, dest: loaded.append(gguf) or dest)
    return base, loaded


@pytest.mark.parametrize("name", ["../../outside.gguf", "../base/a.gguf", "sub/a.gguf"])
def test_a_path_is_refused(volume, name):
    base, loaded = volume
    with pytest.raises(ModelSourceError, match="must be a file name"):
        resolve_model_dir(base, "gguf", name, cache=base.parent / "cache")
    assert loaded == []


def test_an_absolute_path_is_refused(volume, tmp_path):
    base, loaded = volume
    with pytest.raises(ModelSourceError, match="must be a file name"):
        resolve_model_dir(base, "gguf", str(tmp_path / "outside.gguf"), cache=base.parent / "cache")
    assert loaded == []


def test_a_file_name_picks_that_file(volume):
    base, loaded = volume
    resolve_model_dir(base, "gguf", "b.gguf", cache=base.parent / "cache")
    assert loaded == [base / "b.gguf"]
