"""TEST MODEL standing in for the real exported classifier.

The real one (a fine-tuned all-MiniLM-L6-v2 on ONNX Runtime) is packaged by
``tuneline_workloads.triton.repository`` and tested by the export engineer's tests. This one follows
the same contract (``tuneline_workloads.contract``: ``text`` BYTES [-1, 1] in, ``probabilities``
FP32 [-1, num_labels] out, label names in the config parameter ``labels_json``) and returns
deterministic probabilities from the text: a softmax over (bad words, 0.5, good words).

``batch_cost_ms`` (config parameter, default 0) spends that much CPU per execute() call, whatever the
batch size, like a real encoder's fixed per-call cost; the serving benchmark uses it to show what
dynamic batching buys.
"""

import json
import time

import numpy as np
import triton_python_backend_utils as pb_utils

GOOD = {"good", "great", "love", "excellent", "happy", "thanks"}
BAD = {"bad", "awful", "hate", "terrible", "angry", "broken"}


def probabilities(text: str) -> np.ndarray:
    words = [w.strip(".,!?").lower() for w in text.split()]
    scores = np.array([sum(w in BAD for w in words), 0.5, sum(w in GOOD for w in words)], dtype=np.float64)
    e = np.exp(scores - scores.max())
    return (e / e.sum()).astype(np.float32)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = config.get("parameters", {})
        self.labels = json.loads(params["labels_json"]["string_value"])
        self.cost = float(params.get("batch_cost_ms", {}).get("string_value", "0")) / 1000.0
        self.weights = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32)

    def _burn(self):
        end = time.perf_counter() + self.cost
        x = self.weights
        while time.perf_counter() < end:
            x = np.tanh(x @ self.weights * 0.01)

    def execute(self, requests):
        if self.cost:
            self._burn()
        responses = []
        for request in requests:
            texts = pb_utils.get_input_tensor_by_name(request, "text").as_numpy().reshape(-1)
            probs = np.stack([probabilities(t.decode("utf-8", "replace")) for t in texts])
            responses.append(pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor("probabilities", probs)]))
        return responses
