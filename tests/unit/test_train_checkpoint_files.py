"""Checkpoint files: what counts as complete, which one a restart picks, and where a worker reads it."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from tuneline_workloads.train.loop import (  # noqa: E402
    MANIFEST_FILE, OPTIMIZER_FILE, checkpoint_directory, checkpoint_is_complete, latest_checkpoint)


def _checkpoint(directory, step, payload=b"x" * 64):
    directory.mkdir(parents=True)
    (directory / OPTIMIZER_FILE).write_bytes(payload)
    (directory / MANIFEST_FILE).write_text(json.dumps({"step": step, "files": {OPTIMIZER_FILE: len(payload)}}))
    return directory


def test_a_checkpoint_whose_file_is_shorter_than_its_manifest_says_is_incomplete(tmp_path):
    ckpt = _checkpoint(tmp_path / "step-2", 2)
    assert checkpoint_is_complete(ckpt)
    (ckpt / OPTIMIZER_FILE).write_bytes(b"x" * 10)          # a copy cut short by a kill
    assert not checkpoint_is_complete(ckpt)


def test_latest_checkpoint_skips_a_newer_partial_one(tmp_path):
    _checkpoint(tmp_path / "step-2", 2)
    partial = tmp_path / "step-4"
    partial.mkdir()
    (partial / OPTIMIZER_FILE).write_bytes(b"half")          # no manifest yet
    assert latest_checkpoint(tmp_path).name == "step-2"


def test_workers_read_a_local_ray_checkpoint_in_place_not_from_a_shared_copy(tmp_path):
    """Ray's to_directory() shares one temp dir per node; a late worker re-downloading into it tore
    another worker's read (CI: 'PytorchStreamReader failed reading file'). Local checkpoints are
    read where they are, so nothing is rewritten under a reader."""
    from ray.train import Checkpoint

    ckpt = _checkpoint(tmp_path / "checkpoints" / "step-2", 2)
    private = tmp_path / "private"
    private.mkdir()
    assert checkpoint_directory(Checkpoint.from_directory(str(ckpt)), private) == ckpt
    assert list(private.iterdir()) == []
