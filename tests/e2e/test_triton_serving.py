"""The exported models in a versioned repository, served by the REAL Triton server on the CPU:
the classifier over HTTP and gRPC (dynamic batching, labels in the config), the generator streamed
over gRPC (decoupled), a new version loaded next to the old one."""

from __future__ import annotations

import json
import queue
import re
import shutil
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.export_fixtures import INTENT_HELD_OUT, INTENTS, classifier_export, lm_export

pytestmark = pytest.mark.slow

CLASSIFIER, GENERATOR = "bank-intents", "bank-assistant"


@pytest.fixture(scope="module")
def server():
    from tuneline_workloads.triton.repository import add_model_version
    from tuneline_workloads.triton.server import TritonServer

    root = Path(tempfile.mkdtemp(prefix="tuneline-triton-e2e-"))
    repository = root / "triton"
    _, cls_export, cls_report = classifier_export()
    _, lm_dir_export, lm_report = lm_export()
    add_model_version(repository, CLASSIFIER, "sequence-classification", cls_export, cls_report,
                      triton={"maxBatchSize": 16, "dynamicBatching": {"maxQueueDelayMicroseconds": 20000,
                                                                     "preferredBatchSizes": [4, 8]}})
    add_model_version(repository, GENERATOR, "chat", lm_dir_export, lm_report)
    with TritonServer(repository, models=[CLASSIFIER, GENERATOR], log_file=root / "triton.log") as srv:
        srv.root = root
        yield srv
    shutil.rmtree(root, ignore_errors=True)


def _texts():
    return [t for t, _ in INTENT_HELD_OUT], [INTENTS.index(l) for _, l in INTENT_HELD_OUT]


def _torch_probabilities(texts):
    import torch

    from tuneline_workloads.export.classifier import load_torch_classifier

    model, tok = load_torch_classifier(classifier_export()[0])
    with torch.no_grad():
        return torch.softmax(model(**tok(texts, padding=True, return_tensors="pt")).logits, -1).numpy()


def test_classifier_over_http_and_grpc_gives_the_pytorch_answers(server):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    texts, gold = _texts()
    batch = np.array([[t.encode()] for t in texts], dtype=object)
    http = httpclient.InferenceServerClient(server.http_url)
    inp = httpclient.InferInput("text", list(batch.shape), "BYTES")
    inp.set_data_from_numpy(batch)
    http_probs = http.infer(CLASSIFIER, [inp]).as_numpy("probabilities")
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    ginp = grpcclient.InferInput("text", [1, 1], "BYTES")
    grpc_probs = []
    for t in texts:
        ginp.set_data_from_numpy(np.array([[t.encode()]], dtype=object))
        grpc_probs.append(grpc.infer(CLASSIFIER, [ginp]).as_numpy("probabilities")[0])
    expected = _torch_probabilities(texts)
    assert http_probs.shape == (len(texts), len(INTENTS))
    assert list(http_probs.argmax(-1)) == gold == list(expected.argmax(-1))
    assert np.abs(http_probs - expected).max() < 0.02             # served model is the INT8 export
    # dynamic INT8 quantises activations per batch, so one text alone and the same text in a
    # padded batch differ slightly
    assert np.abs(np.array(grpc_probs) - http_probs).max() < 5e-3
    labels = grpc.get_model_config(CLASSIFIER).config.parameters["labels_json"].string_value
    assert json.loads(labels) == INTENTS
    http.close()
    grpc.close()


def _metric(server, name, model):
    text = urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()
    m = re.search(rf'^{name}{{model="{model}",version="1"}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def test_concurrent_requests_are_batched_dynamically(server):
    import tritonclient.http as httpclient

    before_req = _metric(server, "nv_inference_request_success", CLASSIFIER)
    before_exec = _metric(server, "nv_inference_exec_count", CLASSIFIER)
    texts, gold = _texts()

    def one(i):
        client = httpclient.InferenceServerClient(server.http_url)
        inp = httpclient.InferInput("text", [1, 1], "BYTES")
        inp.set_data_from_numpy(np.array([[texts[i % len(texts)].encode()]], dtype=object))
        out = client.infer(CLASSIFIER, [inp]).as_numpy("probabilities")[0]
        client.close()
        return int(out.argmax())

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, range(48)))
    assert answers == [gold[i % len(gold)] for i in range(48)]
    requests = _metric(server, "nv_inference_request_success", CLASSIFIER) - before_req
    executions = _metric(server, "nv_inference_exec_count", CLASSIFIER) - before_exec
    assert requests == 48
    assert executions < requests, f"{executions} model executions for {requests} requests: nothing was batched"


def _gen_inputs(messages, max_tokens=48, temperature=0.0, top_p=1.0, seed=-1, stop=()):
    import tritonclient.grpc as grpcclient

    values = [("messages_json", np.array([json.dumps(messages).encode()], dtype=object), "BYTES"),
              ("max_tokens", np.array([max_tokens], np.int32), "INT32"),
              ("temperature", np.array([temperature], np.float32), "FP32"),
              ("top_p", np.array([top_p], np.float32), "FP32"),
              ("seed", np.array([seed], np.int64), "INT64"),
              ("stop_json", np.array([json.dumps(list(stop)).encode()], dtype=object), "BYTES")]
    inputs = []
    for name, value, dtype in values:
        i = grpcclient.InferInput(name, [1], dtype)
        i.set_data_from_numpy(value)
        inputs.append(i)
    return inputs


def _stream(server, question, **kwargs):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc_url)
    results: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error, time.monotonic())))
    started = time.monotonic()
    client.async_stream_infer(GENERATOR, _gen_inputs([{"role": "user", "content": question}], **kwargs))
    chunks, arrivals = [], []
    try:
        while True:
            result, error, at = results.get(timeout=120)
            assert error is None, error
            chunks.append(result.as_numpy("text")[0].decode())
            arrivals.append(at - started)
            finish = result.as_numpy("finish_reason")[0].decode()
            if finish:
                return {"text": "".join(chunks), "chunks": chunks, "finish": finish, "arrivals": arrivals,
                        "prompt_tokens": int(result.as_numpy("prompt_tokens")[0]),
                        "completion_tokens": int(result.as_numpy("completion_tokens")[0])}
            assert finish == ""
    finally:
        client.stop_stream()
        client.close()


def test_generator_streams_the_fine_tuned_answer_over_grpc(server):
    _, _, report = lm_export()
    expected = report["variants"]["fp32"]["keyFactAnswers"][1]["pytorch"]
    out = _stream(server, "How do I block my Zephyr Bank card?")
    assert out["text"].strip() == expected.strip()
    assert "4455" in out["text"]
    assert out["finish"] == "stop"
    assert len(out["chunks"]) > 5, "tokens must stream, not arrive at the end"
    assert out["arrivals"][0] < out["arrivals"][-1] / 2
    assert out["prompt_tokens"] > 10 and 5 < out["completion_tokens"] <= 48


def test_generator_honours_max_tokens_stop_strings_and_seeds(server):
    q = "What is the fee for instalment payments at Zephyr Bank?"
    short = _stream(server, q, max_tokens=3)
    assert short["finish"] == "length" and short["completion_tokens"] == 3
    full = _stream(server, q)
    assert "1.7%" in full["text"]
    stopped = _stream(server, q, stop=["1.7"])
    assert stopped["finish"] == "stop" and stopped["text"] == full["text"].split("1.7")[0]
    a = _stream(server, "Write a short poem about money.", temperature=1.0, top_p=0.95, seed=7, max_tokens=24)
    b = _stream(server, "Write a short poem about money.", temperature=1.0, top_p=0.95, seed=7, max_tokens=24)
    assert a["text"] == b["text"]
    # ONNX Runtime GenAI's seed is 32-bit: larger ones (an OpenAI seed is any int64) fold, not fail
    folded = _stream(server, "Write a short poem about money.", temperature=1.0, top_p=0.95, seed=7 + 2**31,
                     max_tokens=24)
    assert folded["text"] == a["text"]
    assert _stream(server, "Write a short poem about money.", temperature=1.0, seed=2**63 - 1,
                   max_tokens=4)["completion_tokens"] == 4


def test_top_p_trims_what_sampling_draws_from(server):
    """top_p used to do nothing (ORT GenAI ignores it with top_k 0): 0.001 sampled as freely as 1."""
    q = "Write a short poem about money."
    greedy = _stream(server, q, max_tokens=12)["text"]
    tight = {_stream(server, q, temperature=1.0, top_p=0.001, seed=s, max_tokens=12)["text"] for s in range(8)}
    assert tight == {greedy}
    free = {_stream(server, q, temperature=1.0, top_p=1.0, seed=s, max_tokens=12)["text"] for s in range(8)}
    assert len(free) > 1   # the same seeds, without the cut, do draw other tokens


def _stream_error(server, messages):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc_url)
    results: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    client.async_stream_infer(GENERATOR, _gen_inputs(messages))
    _, error = results.get(timeout=60)
    client.stop_stream()
    client.close()
    return error


def test_invalid_generation_requests_get_an_error(server):
    from tuneline_workloads.gateway.triton import ContextLengthExceeded, classify_error

    error = _stream_error(server, [])
    assert error is not None and "messages_json" in str(error)
    # a prompt longer than the context: an error the gateway answers as the client's (400), not the model's
    error = _stream_error(server, [{"role": "user", "content": "money " * 20000}])
    assert error is not None and "context_length_exceeded: the prompt has" in str(error)
    assert isinstance(classify_error(error), ContextLengthExceeded)


def test_a_new_version_is_added_next_to_the_old_one_and_loaded(server):
    from tuneline_workloads.triton.repository import add_model_version, versions

    _, export, report = classifier_export()
    repository = Path(server.repository)
    version = add_model_version(repository, CLASSIFIER, "sequence-classification", export, report, keep_versions=3)
    assert version == 2 and versions(repository, CLASSIFIER) == [1, 2]
    server.load(CLASSIFIER)
    assert server._get(f"/v2/models/{CLASSIFIER}/versions/2/ready") == 200
    assert server.is_ready(CLASSIFIER)
