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


def test_a_checkpoint_carries_the_loss_scale_and_rng_state_across_a_resume(tmp_path):
    """fp16 training's loss scale (GradScaler) is restored, not restarted at 65536; the RNG state too.
    A CPU GradScaler stands in for the CUDA one (same state_dict); the CUDA generators need a GPU."""
    from tuneline_workloads.train.loop import TrainState, read_checkpoint, write_checkpoint

    def parts():
        model = torch.nn.Linear(4, 2)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        return model, optimizer, scheduler, torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)

    model, optimizer, scheduler, scaler = parts()
    scaler.scale(model(torch.ones(1, 4)).sum())
    scaler.update(new_scale=512.0)
    torch.manual_seed(3)
    write_checkpoint(tmp_path, model, optimizer, scheduler, TrainState(step=7), None, scaler)
    expected_draw = torch.rand(3)
    fresh_model, fresh_optimizer, fresh_scheduler, fresh_scaler = parts()
    state, _ = read_checkpoint(tmp_path, fresh_model, fresh_optimizer, fresh_scheduler, fresh_scaler)
    assert state.step == 7 and fresh_scaler.get_scale() == 512.0
    assert torch.equal(torch.rand(3), expected_draw)
