"""The gateway in front of a real exported model: the tiny fine-tuned MiniLM intent classifier of
``export_fixtures`` exported to ONNX, packaged by ``tuneline_workloads.triton.repository`` (the
real repository builder) and served by the real tritonserver. The gateway must return exactly
what Triton computes, with the labels the repository recorded.
"""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from gateway_support import Gateway, require_serving_env
from tuneline_workloads import contract
from tuneline_workloads.triton.server import TritonServer

pytestmark = pytest.mark.slow


def test_real_exported_classifier_through_the_gateway(tmp_path):
    require_serving_env()
    pytest.importorskip("torch")
    import export_fixtures as ef
    from tuneline_workloads.triton.repository import add_model_version

    _, export, report = ef.classifier_export()
    repo = tmp_path / "triton"
    version = add_model_version(repo, "intent", "sequence-classification", export, report)
    texts = [t for t, _ in ef.INTENT_HELD_OUT]
    expected = [label for _, label in ef.INTENT_HELD_OUT]
    with TritonServer(repo, models=["intent"], log_file=tmp_path / "triton.log") as triton:
        gw = Gateway(triton, "intent", "sequence-classification", tmp_path, keys={"bank": "sk-bank-123456"},
                     config={"modelVersion": version}).start()
        try:
            r = httpx.post(f"{gw.url}/v1/classify", json={"model": "intent", "input": texts},
                           headers={"Authorization": "Bearer sk-bank-123456"}, timeout=60)
            assert r.status_code == 200, r.text
            body = r.json()
            import tritonclient.grpc as grpcclient
            client = grpcclient.InferenceServerClient(triton.grpc_url)
            t = grpcclient.InferInput(contract.CLS_INPUT_TEXT, [len(texts), 1], "BYTES")
            t.set_data_from_numpy(np.array([[s.encode()] for s in texts], dtype=np.object_))
            direct = client.infer("intent", [t]).as_numpy(contract.CLS_OUTPUT_PROBABILITIES)
            labels = json.loads(client.get_model_config("intent", as_json=True)["config"]["parameters"]
                                [contract.CLS_LABELS_PARAMETER]["string_value"])
        finally:
            gw.stop()
    assert body["version"] == str(version) and labels == ef.INTENTS
    got = [d["label"] for d in body["data"]]
    for d, row in zip(body["data"], direct):
        assert [s["label"] for s in d["scores"]] == labels
        assert [s["score"] for s in d["scores"]] == pytest.approx(row.tolist(), abs=1e-6)
    assert got == [labels[i] for i in direct.argmax(axis=1)]
    correct = sum(g == e for g, e in zip(got, expected))
    print(f"\nreal classifier through the gateway: {correct}/{len(texts)} held-out intents right: {got}")
    assert correct >= len(texts) // 2   # a few optimizer steps of training; the export tests judge quality
