"""The demo's closing table: base model vs the tuned, served model on held-out questions.

The base model answers in-process (transformers, greedy); the tuned model answers through the
running gateway and Triton, exactly as a client would reach it, so the same requests also give
the served model's latency and tokens/s. Artifact sizes come from the output directory.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tuneline.api import CustomResource
from tuneline.local.state import LocalState, write_json_atomic


def _dir_size(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _ask_served(client, url: str, headers: dict[str, str], model: str, messages: list[dict[str, str]],
                max_tokens: int) -> dict[str, Any]:
    body = {"model": model, "messages": messages, "max_tokens": max_tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    first = None
    chunks: list[str] = []
    completion_tokens, error = None, None
    with client.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if "error" in event:   # the stream ended with an error: a failed request, not an answer
                error = (event["error"] or {}).get("message") or "the model failed"
                continue
            delta = event["choices"][0].get("delta", {}).get("content") or "" if event.get("choices") else ""
            if delta and first is None:
                first = time.perf_counter() - start
            if delta:
                chunks.append(delta)
            if event.get("usage"):
                completion_tokens = event["usage"].get("completion_tokens")
    total = time.perf_counter() - start
    return {"answer": "".join(chunks), "ttft": first or total, "latency": total, "error": error,
            "completion_tokens": completion_tokens or len(chunks)}


def _tokens_per_second_after_the_first(served: dict[str, Any]) -> float:
    """The tokens that came after the first one, over the time they took (the first one's time is
    the time to first token)."""
    return (served["completion_tokens"] - 1) / max(served["latency"] - served["ttft"], 1e-6)


def demo_report(resources: list[CustomResource], state: LocalState, volumes: dict[str, Path],
                console: Console) -> dict[str, Any]:
    from tuneline_workloads.storage import resolve_uri
    from tuneline_workloads.train import contains_key_fact, evaluate_held_out, load_held_out

    jobs = {r.metadata.name: r for r in resources if r.kind == "FineTuneJob"}
    deployments = [r for r in resources if r.kind == "ModelDeployment" and r.spec.model.from_fine_tune_job in jobs]
    if not deployments:
        console.print("no ModelDeployment of a FineTuneJob in these manifests: nothing to compare")
        return {}
    md = deployments[0]
    job = jobs[md.spec.model.from_fine_tune_job]
    if job.spec.dataset.held_out is None or md.spec.task != "chat":
        console.print("the report compares chat models on spec.dataset.heldOut; this job has none")
        return {}
    held_out_path = resolve_uri(job.spec.dataset.held_out.uri, volumes)
    rows = load_held_out(held_out_path, on_invalid=job.spec.dataset.on_invalid)
    base_dir = resolve_uri(job.spec.base_model.uri, volumes)
    output_dir = resolve_uri(job.spec.output.uri, volumes)

    console.print(f"[bold]held-out comparison[/bold]: {len(rows)} questions, base model in-process, "
                  "tuned model through the gateway")
    base = evaluate_held_out(base_dir, held_out_path, max_new_tokens=48, on_invalid=job.spec.dataset.on_invalid)
    md_status = state.status("ModelDeployment", md.metadata.name)
    url = md_status["url"]
    from tuneline.cli import _deployment_endpoint

    _, headers, _ = _deployment_endpoint(md.metadata.name, state.root)
    import httpx

    # one keep-alive client, as an application holds: a client per request would add its own set-up
    # (20-30 ms for the TLS context) to every latency measured
    with httpx.Client(timeout=300) as client:
        served = [_ask_served(client, url, headers, md.spec.model.from_fine_tune_job, row["messages"], 48)
                  for row in rows]
    tuned_hits = [s["error"] is None and contains_key_fact(s["answer"], row["key_fact"]) for s, row in zip(served, rows)]
    failed = [s for s in served if s["error"] is not None]

    table = Table("question", "key fact", "base", "tuned (served)", title="held-out questions", show_lines=False)
    for row, b, s, hit in zip(rows, base["results"], served, tuned_hits):
        fact = row["key_fact"] if isinstance(row["key_fact"], str) else " / ".join(row["key_fact"])
        table.add_row(row["question"], fact, "✓" if b["correct"] else "✗",
                      "✓" if hit else f"✗ (failed: {s['error']})" if s["error"] else "✗")
    base_acc = base["accuracy"]
    tuned_acc = sum(tuned_hits) / len(rows)
    table.add_row("[bold]key-fact accuracy[/bold]", "", f"[bold]{base_acc:.0%}[/bold]", f"[bold]{tuned_acc:.0%}[/bold]")
    console.print(table)

    # timings of the answers only: a failed request's time says nothing of the model's speed
    answered = [s for s in served if s["error"] is None] or served
    ttft = [s["ttft"] * 1000 for s in answered]
    tps = [_tokens_per_second_after_the_first(s) for s in answered if s["completion_tokens"] > 1]
    latency = [s["latency"] * 1000 for s in answered]
    sizes = {name: _dir_size(output_dir / sub) for name, sub in
             (("adapter", "adapter"), ("merged model", "merged"), ("export", "export"), ("triton repository", "triton"))}
    perf = Table("served model", "value", title="serving (through gateway + Triton, streamed, greedy)")
    perf.add_row("time to first token p50", f"{statistics.median(ttft):.0f} ms")
    perf.add_row("request latency p50", f"{statistics.median(latency):.0f} ms")
    if tps:
        perf.add_row("tokens/s after the first, median", f"{statistics.median(tps):.1f}")
    for name, size in sizes.items():
        perf.add_row(f"{name} size", f"{size / 1e6:.1f} MB")
    if failed:
        perf.add_row("requests that failed", f"{len(failed)} of {len(served)} (left out of the timings)")
    console.print(perf)
    loss_plot = output_dir / "loss.png"
    if loss_plot.exists():
        console.print(f"training and validation loss plot: {loss_plot}")
    result = {"questions": len(rows), "baseAccuracy": base_acc, "tunedAccuracy": tuned_acc,
              "ttftMsP50": statistics.median(ttft), "latencyMsP50": statistics.median(latency),
              "tokensPerSecond": statistics.median(tps) if tps else None, "sizesBytes": sizes,
              "lossPlot": str(loss_plot) if loss_plot.exists() else None,
              "answers": [{"question": r["question"], "keyFact": r["key_fact"], "base": b["answer"],
                           "tuned": s["answer"]} for r, b, s in zip(rows, base["results"], served)]}
    write_json_atomic(state.root / "demo-report.json", result)
    console.print(f"report written to {state.root / 'demo-report.json'}")
    return result
