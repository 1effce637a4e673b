"""The export step exports the merged model of THIS training. A method that merges nothing (prefix,
prompt, qlora, or mergeAdapter: false) used to leave an earlier training's merged/ in a reused
output directory, and the export packaged that old model as the new version (its parity check
compared the old model with itself)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from tuneline.api.finetunejob import FineTuneJobSpec, Method
from tuneline_workloads import contract
from tuneline_workloads.export.job import ExportStepError, export_job_output
from tuneline_workloads.train.methods import build_model, save_outputs


@pytest.fixture(scope="module")
def tiny_decoder(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("decoder")
    LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32)
                     ).save_pretrained(path)
    return path


class _Tokenizer:
    def save_pretrained(self, path):
        (path / "tokenizer.json").write_text("{}")


@pytest.mark.parametrize("method, reason", [
    ({"type": "prompt"}, "prompt adds virtual tokens"),
    ({"type": "lora", "mergeAdapter": False}, "spec.method.mergeAdapter is false"),
])
def test_an_earlier_merged_model_is_moved_aside_and_the_export_refuses(tiny_decoder, tmp_path, method, reason):
    out = tmp_path / "out"
    (out / contract.MERGED_DIR).mkdir(parents=True)
    (out / contract.MERGED_DIR / "config.json").write_text('{"from": "an earlier training"}')
    spec_method = Method.model_validate(method)
    model, _ = build_model(spec_method, "chat", tiny_decoder)
    written = save_outputs(model, _Tokenizer(), spec_method, "chat", out)
    assert "merged" not in written and reason in written["mergedSkipped"]
    assert not (out / contract.MERGED_DIR).exists()
    aside = out / written["mergedMovedAside"].rsplit("/", 1)[-1]
    assert json.loads((aside / "config.json").read_text()) == {"from": "an earlier training"}   # kept, not deleted

    (out / contract.TRAINING_SUMMARY_FILE).write_text(json.dumps({"written": written}))
    (out / contract.MERGED_DIR).mkdir()   # even if something put a merged/ back, it is not this training's
    spec = FineTuneJobSpec.model_validate({"baseModel": {"uri": "pvc://m/base"}, "method": method,
                                           "dataset": {"train": {"uri": "pvc://d/train.jsonl"}},
                                           "output": {"uri": "pvc://m/out"}})
    with pytest.raises(ExportStepError, match=f"left no merged model to export .*{reason}.*spec.export.onnx.enabled"):
        export_job_output("m", spec, out)


def test_a_merging_method_writes_its_own_merged_model(tiny_decoder, tmp_path):
    method = Method.model_validate({"type": "lora"})
    model, _ = build_model(method, "chat", tiny_decoder)
    written = save_outputs(model, _Tokenizer(), method, "chat", tmp_path)
    assert written["merged"] == str(tmp_path / contract.MERGED_DIR) and "mergedSkipped" not in written
    assert (tmp_path / contract.MERGED_DIR / "config.json").exists()
