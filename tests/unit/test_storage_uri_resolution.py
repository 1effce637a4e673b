from pathlib import Path

import pytest

from tuneline_workloads.storage import StorageError, resolve_uri


def test_pvc_maps_to_its_volume(tmp_path):
    assert resolve_uri("pvc://data/bank/train.jsonl", {"data": tmp_path}) == tmp_path / "bank/train.jsonl"


def test_unknown_volume_says_how_to_map_it(tmp_path):
    with pytest.raises(StorageError, match="--volume models=<dir>"):
        resolve_uri("pvc://models/x", {"data": tmp_path})


def test_dot_dot_cannot_climb_out_of_the_volume(tmp_path):
    # the API rejects '..' already; this is the second line of defence for URIs built in code
    with pytest.raises(StorageError, match="outside its volume"):
        resolve_uri("pvc://v/../../etc/passwd", {"v": tmp_path / "vol"})


def test_symlinks_inside_a_volume_are_followed(tmp_path):
    (tmp_path / "vol").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "vol" / "base").symlink_to(tmp_path / "elsewhere")
    assert resolve_uri("pvc://v/base/config.json", {"v": tmp_path / "vol"}).resolve() == \
        tmp_path / "elsewhere" / "config.json"


def test_file_uri_must_be_absolute():
    assert resolve_uri("file:///tmp/x") == Path("/tmp/x").resolve()
    with pytest.raises(StorageError):
        resolve_uri("http://example/x")
