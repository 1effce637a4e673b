from pathlib import Path

import pytest

from tuneline_workloads.storage import StorageError, resolve_uri


def test_pvc_maps_to_its_volume(tmp_path):
    assert resolve_uri("pvc://data/bank/train.jsonl", {"data": tmp_path}) == tmp_path.resolve() / "bank/train.jsonl"


def test_unknown_volume_says_how_to_map_it(tmp_path):
    with pytest.raises(StorageError, match="--volume models=<dir>"):
        resolve_uri("pvc://models/x", {"data": tmp_path})


def test_symlink_out_of_the_volume_is_refused(tmp_path):
    (tmp_path / "vol").mkdir()
    (tmp_path / "vol" / "escape").symlink_to("/etc")
    with pytest.raises(StorageError, match="outside its volume"):
        resolve_uri("pvc://v/escape/passwd", {"v": tmp_path / "vol"})


def test_file_uri_must_be_absolute():
    assert resolve_uri("file:///tmp/x") == Path("/tmp/x").resolve()
    with pytest.raises(StorageError):
        resolve_uri("http://example/x")
