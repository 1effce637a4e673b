"""A scripted stand-in for the gateway's Triton client (no server), shared by the gateway tests
that run the FastAPI app in-process. The real-Triton path is covered by tests/e2e/test_gateway_*.py."""

from __future__ import annotations

import asyncio

import numpy as np

from tuneline_workloads.gateway.triton import GenChunk


class ScriptedTriton:
    """Plays Triton: ``script`` is a list of words (the generation, word by word), or an exception
    raised at that position; ``classify`` answers ``labels`` with the first one most likely.
    ``calls`` counts model calls, ``closed`` finished generations."""

    def __init__(self, script=None, delay: float = 0.0, labels=("a", "b")):
        self.script = script or ["Hello", " there"]
        self.delay = delay
        self.labels = list(labels)
        self.calls = 0
        self.closed = 0

    async def start(self):
        pass

    async def close(self):
        pass

    async def ready(self, max_age=0.5):
        return True

    async def version(self):
        return "7"

    async def triton_metrics(self):
        return "# TYPE nv_fake counter\nnv_fake 1\n"

    async def generate(self, req, request_id=""):
        self.calls += 1
        try:
            n = 0
            for i, item in enumerate(self.script):
                if isinstance(item, BaseException):
                    raise item
                await asyncio.sleep(self.delay)
                n += 1
                last = i == len(self.script) - 1
                yield GenChunk(item, "stop" if last else "", 3, n)
        finally:
            self.closed += 1

    async def classify(self, texts, request_id=""):
        self.calls += 1
        first = [0.9] + [0.1 / max(1, len(self.labels) - 1)] * (len(self.labels) - 1)
        return self.labels, np.array([first] * len(texts))
