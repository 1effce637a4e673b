"""Sequence classification on a decoder base model whose config names no pad token (GPT-2 and many
Llama checkpoints): the head reads each row's last token before the first pad, so the model is told
the id the rows are padded with. It used to be told only for language-model tasks, and the first
batch of two rows failed ("Cannot handle batch sizes > 1 if no padding token is defined")."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tuneline.api.finetunejob import Method
from tuneline_workloads.data.tokenization import collate
from tuneline_workloads.train.loop import forward
from tuneline_workloads.train.methods import build_model

PAD = 36


@pytest.fixture(scope="module")
def decoder_without_pad(tmp_path_factory):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=37, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32, eos_token_id=1)
    assert config.pad_token_id is None
    path = tmp_path_factory.mktemp("decoder")
    LlamaForCausalLM(config).save_pretrained(path)
    return path


@pytest.mark.parametrize("method", ["lora", "full"])
def test_a_padded_batch_classifies_each_row_as_it_would_alone(decoder_without_pad, method):
    torch.manual_seed(0)
    model, _ = build_model(Method(type=method), "sequence-classification", decoder_without_pad, labels=["a", "b"],
                           pad_token_id=PAD)
    model.eval()
    assert model.config.pad_token_id == PAD
    rows = [{"input_ids": [5, 6, 7, 8], "label": 0}, {"input_ids": [9, 10], "label": 1}]
    with torch.no_grad():
        loss, count, logits = forward(model, collate(rows, PAD), "sequence-classification", 0.0)
        alone = forward(model, collate(rows[1:], PAD), "sequence-classification", 0.0)[2]
    assert count == 2 and torch.isfinite(loss)
    torch.testing.assert_close(logits[1], alone[0])


def test_without_a_pad_id_from_the_data_the_eos_id_is_used(decoder_without_pad):
    model, _ = build_model(Method(type="lora"), "sequence-classification", decoder_without_pad, labels=["a", "b"])
    assert model.config.pad_token_id == 1
