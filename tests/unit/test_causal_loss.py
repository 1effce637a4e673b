"""The chat / text-generation loss: next-token cross-entropy summed over the trained positions."""

import pytest
import torch

from tuneline_workloads.train.loop import IGNORE_INDEX, causal_loss_sum


def reference(logits, labels, smoothing):
    """Position by position: logits at t score the token at t + 1, ignored labels count nothing."""
    total, count = torch.zeros((), dtype=torch.float64), 0
    vocab = logits.shape[-1]
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1] - 1):
            target = int(labels[b, t + 1])
            if target == IGNORE_INDEX:
                continue
            logp = torch.log_softmax(logits[b, t].double(), -1)
            total -= (1 - smoothing) * logp[target] + smoothing * logp.sum() / vocab
            count += 1
    return total, count


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("virtual_tokens", [0, 4])   # prompt tuning: extra logits in front
def test_loss_matches_a_position_by_position_reference(smoothing, virtual_tokens):
    torch.manual_seed(0)
    labels = torch.randint(0, 11, (3, 7))
    labels[0, :3] = IGNORE_INDEX          # the prompt of a chat row is not trained
    labels[2, 5:] = IGNORE_INDEX          # padding
    logits = torch.randn(3, 7 + virtual_tokens, 11, requires_grad=True)

    loss, count = causal_loss_sum(logits, labels, smoothing)
    want, want_count = reference(logits[:, virtual_tokens:], labels, smoothing)

    assert count == want_count == int((labels[:, 1:] != IGNORE_INDEX).sum())
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    loss.backward()
    assert torch.all(logits.grad[:, :virtual_tokens] == 0)      # virtual tokens predict nothing
    assert torch.all(logits.grad[:, -1] == 0)                   # nor does the last position
    assert logits.grad[:, virtual_tokens:-1].abs().sum() > 0
