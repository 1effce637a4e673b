"""The demo's fine-tune (examples/bank-assistant.yaml, unchanged but for its output) on the bank
chats: the LoRA-tuned SmolLM2 answers clearly more held-out questions with their key fact than the
base model — facts about a fictional bank that the base model cannot know."""

from __future__ import annotations

import pytest
import yaml

from tests.e2e.train_fixtures import DATA, ROOT, local_ray, model_volume, volumes  # noqa: F401

pytestmark = pytest.mark.slow


def test_lora_tuned_model_beats_the_base_model_on_held_out_questions(tmp_path, model_volume, local_ray):
    from tuneline.api.finetunejob import FineTuneJobSpec
    from tuneline_workloads.train import evaluate_held_out, run_training

    manifest = next(d for d in yaml.safe_load_all((ROOT / "examples" / "bank-assistant.yaml").read_text())
                    if d and d["kind"] == "FineTuneJob")
    out = tmp_path / "out"
    spec = FineTuneJobSpec.model_validate({**manifest["spec"], "output": {"uri": f"file://{out}"}})
    assert spec.method.type == "lora" and spec.dataset.held_out is not None

    report = run_training(spec, out, volumes(model_volume))
    tuned = report["heldOut"]
    base = evaluate_held_out(model_volume / "smollm2-135m-instruct", DATA / "bank" / "heldout.jsonl",
                             max_new_tokens=48)
    print(f"\nheld-out key facts, {len(base['results'])} questions: base {base['accuracy']:.0%}, "
          f"tuned {tuned['accuracy']:.0%}")
    assert len(tuned["results"]) == len(base["results"]) >= 10
    assert report["metrics"]["held_out_accuracy"] == tuned["accuracy"]
    assert tuned["accuracy"] >= 0.4 and tuned["accuracy"] >= base["accuracy"] + 0.3, (base, tuned)
