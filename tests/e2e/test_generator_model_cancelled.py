"""The generation model (the exported SmolLM2, real ONNX Runtime GenAI) when Triton reports its
request cancelled (the client went away): it stops generating and still ends the request with a
final response, as Triton's Python backend asks of a decoupled model. It used to return without
one. The flags a model sends are not visible through the real server (its statistics read the same
either way), so Triton's in-server module is stood in for by a recording one here; the real-server
path is in tests/e2e/test_triton_serving.py."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import types

import numpy as np
import pytest

from tests.e2e.export_fixtures import lm_export

pytestmark = pytest.mark.slow
FINAL = 1


class RecordingSender:
    """Triton's response sender, recording; reports the request cancelled after ``cancel_after`` responses."""

    def __init__(self, cancel_after: int) -> None:
        self.cancel_after, self.sent, self.final = cancel_after, [], threading.Event()

    def send(self, response=None, flags=0):
        self.sent.append((response, flags))
        if flags & FINAL:
            self.final.set()

    def is_cancelled(self) -> bool:
        return len(self.sent) >= self.cancel_after


def _stub() -> types.ModuleType:
    stub = types.ModuleType("triton_python_backend_utils")
    stub.TRITONSERVER_RESPONSE_COMPLETE_FINAL = FINAL
    stub.Tensor = lambda name, array: (name, array)
    stub.InferenceResponse = lambda output_tensors=(), error=None: {"outputs": dict(output_tensors), "error": error}
    stub.TritonError = lambda message: message
    stub.get_input_tensor_by_name = lambda request, name: request["inputs"].get(name)
    return stub


class _Input:
    def __init__(self, value) -> None:
        self.value = value

    def as_numpy(self):
        return self.value


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from tuneline_workloads.triton.repository import add_model_version

    _, export, report = lm_export()
    repository = tmp_path_factory.mktemp("gen-cancel") / "triton"
    add_model_version(repository, "gen", "chat", export, report)
    saved = sys.modules.get("triton_python_backend_utils")
    sys.modules["triton_python_backend_utils"] = _stub()
    try:
        spec = importlib.util.spec_from_file_location("_generator_model_under_test", repository / "gen" / "1" / "model.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            sys.modules.pop("triton_python_backend_utils", None)
        else:
            sys.modules["triton_python_backend_utils"] = saved
    instance = module.TritonPythonModel()
    # the packaged parameters are defaults for this model (context, default max tokens, warm-up)
    instance.initialize({"model_config": json.dumps({"parameters": {}}), "model_repository": str(repository / "gen"),
                         "model_version": "1", "model_instance_kind": "CPU"})
    yield instance
    instance.finalize()


class _Request(dict):
    def get_response_sender(self):
        return self["sender"]


def _request(sender, question: str, max_tokens: int) -> _Request:
    inputs = {"messages_json": _Input(np.array([json.dumps([{"role": "user", "content": question}]).encode()],
                                               dtype=np.object_)),
              "max_tokens": _Input(np.array([max_tokens], np.int32))}
    return _Request(inputs=inputs, sender=sender)


def test_a_cancelled_generation_stops_and_still_ends_with_a_final_response(model):
    sender = RecordingSender(cancel_after=2)
    model.execute([_request(sender, "Write a long story about a bank.", max_tokens=200)])
    assert sender.final.wait(120), f"no final response after cancellation: {len(sender.sent)} responses"
    model.outbox.submit(lambda: None).result()   # whatever was queued has gone out
    assert 2 <= len(sender.sent) <= 4             # stopped within a token of being told
    assert sender.sent[-1][1] == FINAL and all(flags == 0 for _, flags in sender.sent[:-1])


def test_an_uncancelled_generation_ends_with_its_finish_reason(model):
    sender = RecordingSender(cancel_after=10**6)
    model.execute([_request(sender, "How do I block my Zephyr Bank card?", max_tokens=48)])
    assert sender.final.wait(120)
    model.outbox.submit(lambda: None).result()
    last, flags = sender.sent[-1]
    assert flags == FINAL and last["outputs"]["finish_reason"][0] in (b"stop", b"length")
