"""Hyperparameter search (spec.search): Ray Tune trials with Optuna TPE or random sampling, ASHA
early termination of bad trials, trials in parallel. Each trial runs the same training loop as a
normal job (one process per trial, reporting each epoch); the best trial's best checkpoint
becomes the job's output, and every trial is summarised in the report."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from tuneline_workloads import contract
from tuneline_workloads.data.pipeline import write_json_atomic

# spec.search.space names -> where the trial's override goes
HYPERPARAMETER_FIELDS = {"learningRate": "learning_rate", "weightDecay": "weight_decay", "warmupRatio": "warmup_ratio",
                         "batchSize": "batch_size", "epochs": "epochs"}
LORA_FIELDS = {"loraR": "r", "loraAlpha": "alpha", "loraDropout": "dropout"}
INTEGER_FIELDS = {"batchSize", "loraR", "loraAlpha"}


class SearchUnavailable(RuntimeError):
    pass


def check_search_available(spec) -> None:
    """Fail before training when the search cannot work (no validation data to score trials on)."""
    if spec.search is None:
        return
    if spec.dataset.validation is None and spec.dataset.effective_validation_split == 0:
        raise SearchUnavailable("spec.search scores trials on validation data: set spec.dataset.validationSplit > 0 "
                                "or spec.dataset.validation")
    if any(name in LORA_FIELDS for name in spec.search.space) and spec.method.type not in ("lora", "qlora"):
        raise SearchUnavailable(f"spec.search.space: loraR/loraAlpha/loraDropout need spec.method.type lora, "
                                f"not {spec.method.type}")


def tune_space(search) -> dict[str, Any]:
    from ray import tune

    space = {}
    for name, domain in search.space.items():
        if domain.log_uniform:
            space[name] = tune.loguniform(*domain.log_uniform)
        elif domain.uniform:
            space[name] = tune.uniform(*domain.uniform)
        else:
            space[name] = tune.choice(list(domain.choice))
    return space


def overrides_of(params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {"hyperparameters": {}, "lora": {}}
    for name, value in params.items():
        if name in INTEGER_FIELDS:
            value = int(round(value))
        if name in HYPERPARAMETER_FIELDS:
            out["hyperparameters"][HYPERPARAMETER_FIELDS[name]] = value
        elif name in LORA_FIELDS:
            out["lora"][LORA_FIELDS[name]] = value
    return out


def most_epochs(spec, num_examples: int) -> int:
    """The most epochs any trial can run, so the most results it reports (one per epoch). ASHA stops
    every trial at ``max_t`` results: below this, trials that sample more epochs (or need more of
    them to reach maxSteps) would be cut short and ranked on a truncated run."""
    from tuneline_workloads.train.loop import schedule

    hp, space = spec.hyperparameters, spec.search.space

    def highest(name: str, default: float) -> float:
        domain = space.get(name)
        if domain is None:
            return default
        return max(domain.choice) if domain.choice else (domain.log_uniform or domain.uniform)[1]

    if hp.max_steps:
        # the most epochs: the fewest optimizer steps per epoch, so the largest batch
        plan = schedule(num_examples, 1, int(round(highest("batchSize", hp.batch_size))),
                        hp.gradient_accumulation_steps, 1, None)
        return max(1, math.ceil(hp.max_steps / plan["steps_per_epoch"]))
    return max(1, math.ceil(highest("epochs", hp.epochs)))


def _trial(config: dict[str, Any], base: dict[str, Any] | None = None) -> None:
    from tuneline_workloads.train.loop import train_loop_per_worker

    os.environ["OMP_NUM_THREADS"] = str(base["threads"])
    train_loop_per_worker({**base, "overrides": overrides_of(config)})


def run_search(spec, output_dir: Path, model_dir: Path, data_path: Path, prepared, volumes,
               *, on_progress: Callable[[dict], None] | None = None, started: float) -> dict[str, Any]:
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from tuneline_workloads.train.runner import available_cpus, finish, start_ray, worker_config

    search = spec.search
    metric, mode = search.objective.metric, search.objective.mode
    cpus = available_cpus()
    concurrent = max(1, min(search.concurrent_trials, cpus))
    threads = max(1, cpus // concurrent)
    # each trial keeps its best weights by the objective: what it is ranked on is what it exports
    base = worker_config(spec, output_dir, model_dir, data_path, threads, tune=True, write_outputs=False,
                         select=(metric, mode))
    space = tune_space(search)
    if search.algorithm == "tpe":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        algorithm = OptunaSearch(metric=metric, mode=mode, seed=spec.hyperparameters.seed,
                                 sampler=optuna.samplers.TPESampler(seed=spec.hyperparameters.seed))
    else:
        from ray.tune.search.basic_variant import BasicVariantGenerator

        algorithm = BasicVariantGenerator(random_state=spec.hyperparameters.seed)
    epochs_max = most_epochs(spec, len(prepared.train))
    scheduler = (ASHAScheduler(time_attr="training_iteration", max_t=epochs_max, grace_period=1, reduction_factor=2)
                 if search.early_termination == "asha" else None)
    total = search.trials * epochs_max
    reports = {"n": 0}

    class Progress(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            reports["n"] += 1
            progress = {"phase": "Training", "step": reports["n"], "totalSteps": total,
                        "percent": min(99, int(100 * reports["n"] / total)),
                        "epoch": result.get("epoch"), "trials": len(trials),
                        "metrics": {"evalLoss": result.get("eval_loss")}, "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ")}
            write_json_atomic(output_dir / contract.PROGRESS_FILE, progress)
            if on_progress:
                on_progress(progress)

    # in a RayJob its cluster's Ray (which refuses num_cpus), else a local one of this machine's CPUs
    started_ray = start_ray(1, cpus, use_gpu=False, log_to_driver=False)
    try:
        trainable = tune.with_resources(tune.with_parameters(_trial, base=base), {"CPU": threads})
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(metric=metric, mode=mode, search_alg=algorithm, scheduler=scheduler,
                                        num_samples=search.trials, max_concurrent_trials=concurrent),
            run_config=tune.RunConfig(storage_path=str(output_dir), name="search", callbacks=[Progress()]),
        )
        grid = tuner.fit()
    finally:
        if started_ray:
            ray.shutdown()

    trials = []
    for result in grid:
        config = {k: result.config[k] for k in space} if result.config else {}
        trials.append({"params": config, "iterations": (result.metrics or {}).get("training_iteration"),
                       "best": _best_value(result, metric, mode),   # over its epochs; the rest: its last epoch
                       **{k: (result.metrics or {}).get(k) for k in ("eval_loss", "eval_accuracy", "eval_f1",
                                                                       "eval_perplexity", "step")},
                       "error": str(result.error).splitlines()[0] if result.error else None})
    best = grid.get_best_result(metric=metric, mode=mode, scope="all")   # by each trial's best epoch
    if best.checkpoint is None:
        raise RuntimeError("no search trial reported a checkpoint; see the trials in the report")
    best_params = {k: best.config[k] for k in space}
    overrides = overrides_of(best_params)

    # the best trial's checkpoint becomes the job's checkpoint and its weights the job's outputs
    checkpoint_dir = Path(best.checkpoint.to_directory())
    state_step = json.loads((checkpoint_dir / "trainer_state.json").read_text())["step"]
    target = output_dir / contract.CHECKPOINTS_DIR / f"step-{state_step}"
    if not target.exists():
        shutil.copytree(checkpoint_dir, target)
    _write_outputs(spec, output_dir, model_dir, prepared, overrides, target)
    plan = {"workers": 1, "cpus_per_worker": threads, "use_gpu": False}
    return finish(spec, output_dir, model_dir, prepared.report, started=started, resumed_from=None, plan=plan,
                  volumes=volumes, extra={"search": {"algorithm": search.algorithm, "metric": metric, "mode": mode,
                                                     "earlyTermination": search.early_termination,
                                                     "best": {"params": best_params,
                                                              metric: _best_value(best, metric, mode)},
                                                     "trials": trials}})


def _best_value(result, metric: str, mode: str) -> float | None:
    """The trial's best ``metric`` over its epochs (what it was ranked on), not its last epoch's."""
    history = result.metrics_dataframe
    values = [v for v in (history[metric] if history is not None and metric in history else [])
              if v == v]   # NaN != NaN: epochs without the metric
    if not values:
        return (result.metrics or {}).get(metric)
    return float(min(values) if mode == "min" else max(values))


def _write_outputs(spec, output_dir: Path, model_dir: Path, prepared, overrides, checkpoint: Path) -> None:
    import torch

    from tuneline.api.finetunejob import LoraConfig as LoraSpec
    from tuneline_workloads.train.loop import checkpoint_weights, schedule
    from tuneline_workloads.train.methods import (build_model, load_trainable_state, load_training_tokenizer,
                                                  save_outputs)
    from tuneline_workloads.train.progress import ProgressWriter

    method = spec.method
    if overrides["lora"]:
        method = method.model_copy(update={"lora": (method.lora or LoraSpec()).model_copy(update=overrides["lora"])})
    hp = spec.hyperparameters.model_copy(update=overrides["hyperparameters"])
    tokenizer = load_training_tokenizer(model_dir)   # pads as the trials' rows were padded
    model, params = build_model(method, spec.task, model_dir, labels=prepared.labels,
                                pad_token_id=tokenizer.pad_token_id)
    state, weights = checkpoint_weights(checkpoint)
    load_trainable_state(model, weights)
    written = save_outputs(model, tokenizer, method, spec.task, output_dir, labels=prepared.labels)
    if prepared.labels is not None:
        (output_dir / contract.LABELS_FILE).write_text(json.dumps(prepared.labels))
    plan = schedule(len(prepared.train), 1, hp.batch_size, hp.gradient_accumulation_steps, hp.epochs, hp.max_steps)
    writer = ProgressWriter(output_dir, state.step, plan["steps_per_epoch"], 0, tensorboard=False)
    for evaluation in state.evaluations:
        writer.log(evaluation["step"], {k: v for k, v in evaluation.items() if k != "step"})
    if state.last_train_loss is not None:
        writer.log(state.step, {"train_loss": state.last_train_loss})
    writer.write_progress(state.step, done=True)
    summary = {"state": {**state.__dict__}, "parameters": params, "plan": {**plan, "total_steps": state.step},
               "written": written, "world_size": 1, "device": "cuda" if torch.cuda.is_available() else "cpu",
               "search_overrides": overrides}
    (output_dir / contract.TRAINING_SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=str))
