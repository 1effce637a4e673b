"""Triton Python-backend model: text in, class probabilities out (ONNX Runtime, on the instance's
CPU or GPU).

Copied into a Triton model repository as ``<model>/<version>/model.py`` by
``tuneline_workloads.triton.repository``; self-contained (imports only numpy, onnxruntime,
tokenizers and Triton's ``triton_python_backend_utils``).

Input  ``text``          BYTES [-1, 1]  (dynamic batching over the first dimension)
Output ``probabilities`` FP32  [-1, num_labels]

Parameters (config.pbtxt): ``onnx_file`` (in the version directory), ``labels_json``,
``max_sequence_length``, ``intra_op_threads`` (0: ONNX Runtime's default).
All requests of a dynamic batch are tokenised together (padded to the longest) and run as one
ONNX Runtime call.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer


def execution_providers(instance_kind, device_id, available):
    """ONNX Runtime's providers for a Triton instance: a GPU instance (``instance_group`` KIND_GPU, a
    deployment with GPUs) runs on its own GPU, and fails to load rather than fall back to the CPU
    unnoticed when ONNX Runtime has no CUDA provider."""
    if instance_kind != "GPU":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in available:
        raise RuntimeError("this model instance is on a GPU (instance_group KIND_GPU) but ONNX Runtime here has no "
                           f"CUDAExecutionProvider (it has {', '.join(available)}): the serving image needs "
                           "onnxruntime-gpu, or set the ModelDeployment's spec.resources.gpus to 0")
    return [("CUDAExecutionProvider", {"device_id": int(device_id)}), "CPUExecutionProvider"]


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        here = os.path.join(args["model_repository"], args["model_version"])
        self.labels = json.loads(params.get("labels_json", "[]"))
        max_len = int(params.get("max_sequence_length", "512"))
        self.tokenizer = Tokenizer.from_file(os.path.join(here, "tokenizer.json"))
        self.tokenizer.enable_truncation(max_len)
        self.tokenizer.enable_padding()
        options = ort.SessionOptions()
        threads = int(params.get("intra_op_threads", "0"))
        if threads > 0:
            options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = execution_providers(args.get("model_instance_kind", "CPU"),
                                        args.get("model_instance_device_id", "0"), ort.get_available_providers())
        self.session = ort.InferenceSession(os.path.join(here, params.get("onnx_file", "model.onnx")), options,
                                            providers=providers)
        self.input_names = [i.name for i in self.session.get_inputs()]
        out_names = [o.name for o in self.session.get_outputs()]
        self.output = "probabilities" if "probabilities" in out_names else out_names[0]
        self.softmax = self.output != "probabilities"

    def _texts(self, request):
        raw = pb_utils.get_input_tensor_by_name(request, "text").as_numpy().reshape(-1)
        return [t.decode("utf-8", errors="replace") if isinstance(t, bytes) else str(t) for t in raw]

    def execute(self, requests):
        texts, counts, responses = [], [], []
        for request in requests:
            batch = self._texts(request)
            counts.append(len(batch))
            texts.extend(batch)
        try:
            encs = self.tokenizer.encode_batch(texts)
            feeds = {"input_ids": np.array([e.ids for e in encs], dtype=np.int64),
                     "attention_mask": np.array([e.attention_mask for e in encs], dtype=np.int64),
                     "token_type_ids": np.array([e.type_ids for e in encs], dtype=np.int64)}
            out = self.session.run([self.output], {n: feeds[n] for n in self.input_names})[0].astype(np.float32)
            if self.softmax:
                out = np.exp(out - out.max(axis=-1, keepdims=True))
                out = out / out.sum(axis=-1, keepdims=True)
        except Exception as exc:  # noqa: BLE001 - every request of the batch gets the error
            error = pb_utils.TritonError(f"classification failed: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        start = 0
        for n in counts:
            tensor = pb_utils.Tensor("probabilities", out[start:start + n])
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
            start += n
        return responses

    def finalize(self):
        self.session = None
