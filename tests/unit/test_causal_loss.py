"""The chat / text-generation loss: next-token cross-entropy summed over the trained positions, with
the LM head run only at those positions; packed rows kept apart; gradient accumulation weighing
every target of a step alike. Checked on a tiny randomly initialised Llama (no weights to load),
bare and behind each peft method, against the model's full logits scored position by position."""

import pytest
import torch
from peft import (IA3Config, LoraConfig, PrefixTuningConfig, PromptTuningConfig, TaskType, get_peft_model)
from transformers import LlamaConfig, LlamaForCausalLM

from tuneline_workloads.train.loop import IGNORE_INDEX, forward

VOCAB = 37


def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config)


PEFT = {
    "full": None,
    "lora": LoraConfig(task_type=TaskType.CAUSAL_LM, r=4, lora_alpha=8, target_modules="all-linear"),
    "ia3": IA3Config(task_type=TaskType.CAUSAL_LM, target_modules=["k_proj", "v_proj", "down_proj"],
                     feedforward_modules=["down_proj"]),
    "prompt": PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=4),
    "prefix": PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=4),
}


def reference(logits, labels, smoothing):
    """Position by position: logits at t score the token at t + 1, ignored labels count nothing."""
    total, count = torch.zeros((), dtype=torch.float64), 0
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1] - 1):
            target = int(labels[b, t + 1])
            if target == IGNORE_INDEX:
                continue
            logp = torch.log_softmax(logits[b, t].double(), -1)
            total -= (1 - smoothing) * logp[target] + smoothing * logp.sum() / VOCAB
            count += 1
    return total, count


def batch():
    torch.manual_seed(1)
    ids = torch.randint(0, VOCAB, (3, 7))
    labels = ids.clone()
    labels[0, :3] = IGNORE_INDEX          # the prompt of a chat row is not trained
    labels[2, 5:] = IGNORE_INDEX          # padding
    mask = torch.ones_like(ids)
    mask[2, 5:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("method", list(PEFT))
def test_loss_matches_the_full_logits_scored_position_by_position(method, smoothing):
    model = tiny_llama() if PEFT[method] is None else get_peft_model(tiny_llama(), PEFT[method])
    model.eval()   # no dropout: both passes see the same network
    b = batch()
    with torch.no_grad():
        full = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    full = full[:, -b["labels"].shape[1]:]   # prompt tuning's virtual tokens come first and predict nothing

    loss, count, logits = forward(model, b, "chat", smoothing)
    want, want_count = reference(full, b["labels"], smoothing)

    assert count == want_count == int((b["labels"][:, 1:] != IGNORE_INDEX).sum())
    assert logits.shape == (count, VOCAB)                     # the head ran at the trained positions only
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    loss.backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)
    # the hook is gone afterwards: generation and export see the whole sequence's logits again
    assert model(input_ids=b["input_ids"]).logits.shape[-2] == full.shape[1] + (4 if method == "prompt" else 0)


def test_a_batch_with_nothing_to_train_gives_zero_loss_and_count():
    model = tiny_llama()
    b = batch()
    b["labels"][:] = IGNORE_INDEX
    loss, count, logits = forward(model, b, "chat", 0.0)
    assert count == 0 and logits.shape == (0, VOCAB) and loss.item() == 0.0
    loss.backward()   # still a graph: DDP's ranks must all run backward


def test_the_gradient_equals_the_full_logits_gradient():
    """Skipping the head elsewhere changes what is computed, not the gradient."""
    b = batch()
    model = tiny_llama()
    loss, count, _ = forward(model, b, "chat", 0.0)
    loss.backward()
    ours = {n: p.grad.clone() for n, p in model.named_parameters()}

    model.zero_grad()
    full = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    targets = torch.nn.functional.pad(b["labels"][:, 1:], (0, 1), value=IGNORE_INDEX)
    torch.nn.functional.cross_entropy(full.reshape(-1, VOCAB), targets.reshape(-1), reduction="sum").backward()
    for n, p in model.named_parameters():
        assert torch.allclose(p.grad, ours[n], rtol=1e-4, atol=1e-6), n


@pytest.mark.parametrize("method", ["full", "lora"])
def test_packed_rows_do_not_attend_to_each_other(method):
    """A packed sequence's loss is its rows' losses added up: no row sees another (transformers
    masks rows apart by their restarting position ids only when the forward has no KV cache)."""
    from tuneline_workloads.data import collate, pack

    model = tiny_llama() if PEFT[method] is None else get_peft_model(tiny_llama(), PEFT[method])
    model.eval()
    torch.manual_seed(2)
    rows = [{"input_ids": ids, "labels": ids} for ids in (torch.randint(0, VOCAB, (n,)).tolist() for n in (6, 4, 5))]
    packed = pack(rows, 16)
    assert len(packed) == 1 and packed[0]["rows"] == 3
    together, n_together, _ = forward(model, collate(packed, 0), "chat", 0.0)
    alone = [forward(model, collate([r], 0), "chat", 0.0) for r in rows]
    assert n_together == sum(n for _, n, _ in alone) == 6 + 4 + 5 - 3
    assert together.item() == pytest.approx(sum(loss.item() for loss, _, _ in alone), rel=1e-5)


def _rows(lengths_and_prompts):
    torch.manual_seed(3)
    rows = []
    for n, prompt in lengths_and_prompts:
        ids = torch.randint(0, VOCAB, (n,)).tolist()
        rows.append({"input_ids": ids, "labels": [IGNORE_INDEX] * prompt + ids[prompt:]})
    return rows


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_accumulated_micro_batches_weigh_every_target_as_one_batch_would():
    """Gradient accumulation over micro-batches with very different numbers of trained tokens gives
    the gradient of one batch holding them all (the mean over all targets), not a mean of means."""
    from tuneline_workloads.data import collate
    from tuneline_workloads.train.loop import loss_scale, trained_targets

    rows = _rows([(9, 1), (8, 2), (9, 7), (6, 4)])      # 8, 6, 2 and 2 trained targets
    model = tiny_llama()
    loss, count, _ = forward(model, collate(rows, 0), "chat", 0.0)
    (loss / count).backward()
    one_batch = _grads(model)
    assert trained_targets(rows, "chat") == count == 18

    model.zero_grad()
    scale = loss_scale(rows, "chat", 1, torch.device("cpu"))
    for micro in (rows[:2], rows[2:]):
        loss, _, _ = forward(model, collate(micro, 0), "chat", 0.0)
        (loss * scale).backward()
    for name, grad in _grads(model).items():
        assert torch.allclose(grad, one_batch[name], rtol=1e-4, atol=1e-7), name

    # what dividing each micro-batch by its own count would have given: a different gradient
    model.zero_grad()
    for micro in (rows[:2], rows[2:]):
        loss, n, _ = forward(model, collate(micro, 0), "chat", 0.0)
        (loss / n / 2).backward()
    assert not all(torch.allclose(g, one_batch[k], rtol=1e-3) for k, g in _grads(model).items())


def test_the_loss_scale_counts_classification_rows_and_ranks():
    from tuneline_workloads.train.loop import loss_scale

    rows = [{"input_ids": [1, 2], "label": 0}] * 8
    assert loss_scale(rows, "sequence-classification", 1, torch.device("cpu")) == pytest.approx(1 / 8)
    # DDP averages the ranks' gradients: without a process group the count is this rank's alone
    assert loss_scale(rows, "sequence-classification", 2, torch.device("cpu")) == pytest.approx(2 / 8)
