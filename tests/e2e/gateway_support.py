"""Helpers of the gateway's end-to-end tests: the real tritonserver with the test models of
``gateway_models/`` (stand-ins for the real exported models, which the export tests cover), the
gateway as a subprocess in the serving environment, and a bounded loopback load generator.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from tuneline_workloads.triton.server import DEFAULT_SERVE_ENV, TritonServer, free_port

MODELS_DIR = Path(__file__).parent / "gateway_models"
SERVE_PYTHON = DEFAULT_SERVE_ENV / "bin" / "python"
TRITON_BINARY = DEFAULT_SERVE_ENV / "triton" / "bin" / "tritonserver"


def require_serving_env() -> None:
    if not TRITON_BINARY.exists() or not SERVE_PYTHON.exists():
        pytest.skip(f"needs the serving environment with tritonserver ({TRITON_BINARY}): run hack/setup-python.sh")
    probe = subprocess.run([str(SERVE_PYTHON), "-c", "import fastapi, uvicorn, tritonclient.grpc.aio"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip("the serving environment lacks fastapi/uvicorn/tritonclient: run hack/setup-python.sh")


def copy_repository(dest: Path, token_delay_s: float | None = None) -> Path:
    """A private copy of the test models (tests add versions to it)."""
    shutil.copytree(MODELS_DIR, dest, ignore=shutil.ignore_patterns("__pycache__"))
    if token_delay_s is not None:
        config = dest / "echo_chat" / "config.pbtxt"
        text = config.read_text().replace('string_value: "0.01"', f'string_value: "{token_delay_s}"')
        config.write_text(text)
    return dest


def add_version(repository: Path, model: str, version: int) -> None:
    """Publish a new version of ``model`` (a copy of its newest one), as a new export would."""
    versions = sorted(int(p.name) for p in (repository / model).iterdir() if p.name.isdigit())
    shutil.copytree(repository / model / str(versions[-1]), repository / model / str(version),
                    ignore=shutil.ignore_patterns("__pycache__"))


@dataclass
class Gateway:
    """``python -m tuneline_workloads.gateway`` in the serving environment, on a loopback port."""

    triton: TritonServer
    model: str
    task: str
    workdir: Path
    config: dict[str, Any] = field(default_factory=dict)
    keys: dict[str, str] | None = None
    port: int = 0
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def audit_path(self) -> Path:
        return self.workdir / f"audit-{self.model}-{self.port}.jsonl"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"gateway-{self.model}-{self.port}.log"

    def start(self, timeout: float = 60) -> "Gateway":
        self.port = self.port or free_port()
        config_path = self.workdir / f"gateway-{self.port}.json"
        config_path.write_text(json.dumps({**self.config, "model": self.model, "task": self.task}))
        cmd = [str(SERVE_PYTHON), "-m", "tuneline_workloads.gateway", "--triton-grpc", self.triton.grpc_url,
               "--triton-http", self.triton.http_url, "--triton-metrics", self.triton.metrics_url,
               "--model", self.model, "--task", self.task, "--port", str(self.port), "--host", "127.0.0.1",
               "--config", str(config_path), "--audit-log", str(self.audit_path), "--log-level", "warning"]
        if self.keys is not None:
            keys_path = self.workdir / f"keys-{self.port}"
            keys_path.write_text("".join(f"{k}:{v}\n" for k, v in self.keys.items()))
            keys_path.chmod(0o600)
            cmd += ["--api-keys-file", str(keys_path)]
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode}:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gateway not ready after {timeout}s:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def audit(self) -> list[dict[str, Any]]:
        if not self.audit_path.exists():
            return []
        return [json.loads(line) for line in self.audit_path.read_text().splitlines() if line.strip()]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class LoadResult:
    duration_s: float
    concurrency: int
    ok: int
    errors: list[str]
    latencies: list[float]
    ttfts: list[float]

    @property
    def throughput(self) -> float:
        return self.ok / self.duration_s if self.duration_s else 0.0

    def summary(self) -> dict[str, Any]:
        ms = lambda v: round(v * 1000, 1)  # noqa: E731
        return {"concurrency": self.concurrency, "duration_s": round(self.duration_s, 1), "requests": self.ok,
                "errors": len(self.errors), "throughput_rps": round(self.throughput, 1),
                "latency_ms": {"p50": ms(percentile(self.latencies, 50)), "p95": ms(percentile(self.latencies, 95)),
                               "p99": ms(percentile(self.latencies, 99)), "max": ms(max(self.latencies or [0]))},
                "ttft_ms": {"p50": ms(percentile(self.ttfts, 50)), "p95": ms(percentile(self.ttfts, 95)),
                            "p99": ms(percentile(self.ttfts, 99))}}


async def _one(client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str]):
    """One request; streamed ones must end with a finish_reason and [DONE]. → (latency, ttft or None)."""
    start = time.perf_counter()
    if not body.get("stream"):
        r = await client.post(url, json=body, headers=headers)
        if r.status_code != 200:
            raise AssertionError(f"{r.status_code} {r.text[:200]}")
        data = r.json()
        if "choices" in data and not data["choices"][0]["message"]["content"]:
            raise AssertionError(f"empty answer: {data}")
        return time.perf_counter() - start, None   # time to first token: streamed requests only
    ttft = None
    finish = done = False
    async with client.stream("POST", url, json=body, headers=headers) as r:
        if r.status_code != 200:
            await r.aread()
            raise AssertionError(f"{r.status_code} {r.text[:200]}")
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                done = True
                continue
            event = json.loads(line[6:])
            if "error" in event:
                raise AssertionError(f"error event: {event['error']}")
            choice = event["choices"][0] if event.get("choices") else {}
            if choice.get("delta", {}).get("content") and ttft is None:
                ttft = time.perf_counter() - start
            if choice.get("finish_reason"):
                finish = True
    if not (finish and done):
        raise AssertionError("stream ended without finish_reason / [DONE]")
    return time.perf_counter() - start, ttft or 0.0


def run_load(url: str, make_body: Callable[[int, int], dict[str, Any]], *, concurrency: int = 16,
             duration_s: float = 20.0, headers: dict[str, str] | None = None, route: str = "/v1/chat/completions",
             request_timeout: float = 30.0) -> LoadResult:
    """``concurrency`` clients sending back-to-back requests to ``url`` (loopback) for ``duration_s``;
    it stops by itself (no new request after the deadline, each one bounded by its timeout)."""
    async def main() -> LoadResult:
        latencies: list[float] = []
        ttfts: list[float] = []
        errors: list[str] = []
        deadline = time.monotonic() + duration_s
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(timeout=request_timeout, limits=limits) as client:
            async def worker(w: int) -> None:
                i = 0
                while time.monotonic() < deadline:
                    try:
                        latency, ttft = await _one(client, url + route, make_body(w, i), headers or {})
                        latencies.append(latency)
                        if ttft is not None:
                            ttfts.append(ttft)
                    except Exception as exc:  # noqa: BLE001 - counted, reported
                        errors.append(f"{type(exc).__name__}: {exc}"[:300])
                    i += 1
            start = time.monotonic()
            await asyncio.gather(*(worker(w) for w in range(concurrency)))
            elapsed = time.monotonic() - start
        return LoadResult(elapsed, concurrency, len(latencies), errors, latencies, ttfts)
    return asyncio.run(main())


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
