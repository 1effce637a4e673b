"""Triton Python-backend model: chat generation with ONNX Runtime GenAI, streamed (decoupled).

Copied into a Triton model repository as ``<model>/<version>/model.py`` by
``tuneline_workloads.triton.repository``; self-contained (imports only numpy,
onnxruntime_genai and Triton's ``triton_python_backend_utils``). The exported model folder
(genai_config.json, model.onnx, tokenizer, chat_template.jinja) is the version directory.

Inputs (shape [1] each): ``messages_json`` BYTES (JSON list of {role, content}), ``max_tokens``
INT32 (<= 0: the default), ``temperature`` FP32 (0: greedy), ``top_p`` FP32, ``seed`` INT64
(< 0: unseeded; else taken modulo 2**31), ``stop_json`` BYTES (JSON list of stop strings, may be empty).
Outputs, one response per new piece of text, the last one flagged final: ``text`` BYTES,
``finish_reason`` BYTES ("" while streaming, then "stop" or "length"), ``prompt_tokens`` and
``completion_tokens`` INT32 (so far).

Errors end the request with an error response: a prompt that does not fit the context says so
after ``context_length_exceeded: `` (the client's error, for the gateway). A request Triton reports
cancelled stops at the next token and ends with an empty final response.

The chat template is applied inside (the model's own Jinja template). Stop strings are matched
on the decoded text; text that could still become a stop string is held back until it cannot.
Requests run on a small thread pool (``max_concurrency``) so that one long generation does not
block the others; ``execute`` returns at once, as decoupled models may.
"""

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime_genai as og
import triton_python_backend_utils as pb_utils


def _scalar(request, name, default):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return default
    value = tensor.as_numpy().reshape(-1)
    if value.size == 0:
        return default
    value = value[0]
    return value.decode("utf-8") if isinstance(value, bytes) else value.item()


def held_back(text, stops):
    """How many trailing characters of ``text`` could be the start of a stop string."""
    keep = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:n]):
                keep = max(keep, n)
                break
    return keep


def search_options(job, prompt_tokens, max_tokens, vocab_size):
    """ONNX Runtime GenAI's search options for a request: greedy at temperature 0, else sampling with
    the request's temperature, top_p and seed. top_k is the whole vocabulary, so that top_p alone
    trims it (with top_k 0, ORT GenAI ignored top_p: 0.001 sampled as freely as 1)."""
    options = {"max_length": prompt_tokens + max_tokens}
    if job["temperature"] <= 0:
        options["do_sample"] = False
        return options
    options.update(do_sample=True, temperature=job["temperature"], top_k=vocab_size,
                   top_p=min(max(job["top_p"], 1e-6), 1.0) if job["top_p"] > 0 else 1.0)
    if job["seed"] >= 0:
        # random_seed is a 32-bit signed int (contract.GEN_SEED_MASK): larger seeds fold
        options["random_seed"] = job["seed"] & 0x7FFFFFFF
    return options


def genai_config(og, path, instance_kind, device_id):
    """The model's ONNX Runtime GenAI config with the instance's device: a GPU instance (instance_group
    KIND_GPU, a deployment with GPUs) runs on the CUDA provider, on its own GPU, whatever provider
    the export's genai_config.json names (the local export builds for the CPU)."""
    config = og.Config(path)
    if instance_kind == "GPU":
        config.clear_providers()
        config.append_provider("cuda")
        config.set_provider_option("cuda", "device_id", str(device_id))
    return config


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        here = os.path.join(args["model_repository"], args["model_version"])
        self.model = og.Model(genai_config(og, here, args.get("model_instance_kind", "CPU"),
                                           args.get("model_instance_device_id", "0")))
        self.tokenizer = og.Tokenizer(self.model)
        template = os.path.join(here, "chat_template.jinja")
        self.template = open(template).read() if os.path.exists(template) else None
        genai = json.load(open(os.path.join(here, "genai_config.json")))
        self.context = int(params.get("context_length", genai["model"].get("context_length", 2048)))
        self.vocab_size = int(genai["model"]["vocab_size"])
        self.default_max_tokens = int(params.get("default_max_tokens", "256"))
        self.eos = set(int(t) for t in self.tokenizer.eos_token_ids)
        self.pool = ThreadPoolExecutor(max_workers=int(params.get("max_concurrency", "2")),
                                       thread_name_prefix="generate")
        # responses go out from one thread, in order: a generation computes its next token while
        # the previous one travels to Triton (a send waits on the server process)
        self.outbox = ThreadPoolExecutor(max_workers=1, thread_name_prefix="send")
        self.active = 0
        self.lock = threading.Lock()
        if params.get("warmup", "true") == "true":
            # a one-token generation: loads weights and allocates buffers before readiness
            ids = self._prompt_ids([{"role": "user", "content": "Hello"}])
            search = og.GeneratorParams(self.model)
            search.set_search_options(max_length=len(ids) + 1, do_sample=False)
            gen = og.Generator(self.model, search)
            gen.append_tokens(ids)
            gen.generate_next_token()

    def _prompt_ids(self, messages):
        if self.template is not None:
            text = self.tokenizer.apply_chat_template(json.dumps(messages), template_str=self.template,
                                                      add_generation_prompt=True)
        else:
            text = "\n".join(m.get("content", "") for m in messages)
        return list(self.tokenizer.encode(text))

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            try:
                job = {
                    "messages": json.loads(_scalar(request, "messages_json", "[]") or "[]"),
                    "max_tokens": int(_scalar(request, "max_tokens", 0)),
                    "temperature": float(_scalar(request, "temperature", 0.0)),
                    "top_p": float(_scalar(request, "top_p", 1.0)),
                    "seed": int(_scalar(request, "seed", -1)),
                    "stop": json.loads(_scalar(request, "stop_json", "[]") or "[]"),
                }
                if not isinstance(job["messages"], list) or not job["messages"]:
                    raise ValueError("messages_json must be a non-empty JSON list of {role, content}")
                if not isinstance(job["stop"], list) or not all(isinstance(s, str) for s in job["stop"]):
                    raise ValueError("stop_json must be a JSON list of strings")
                job["stop"] = [s for s in job["stop"] if s]
            except Exception as exc:  # noqa: BLE001
                self._fail(sender, f"invalid request: {exc}")
                continue
            self.pool.submit(self._generate, sender, job)
        return None

    def _fail(self, sender, message):
        sender.send(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message)),
                    flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def _close(self, sender):
        try:
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except Exception:  # noqa: BLE001 - already closed
            pass

    def _send(self, sender, text, finish, prompt_tokens, completion_tokens, final=False):
        self.outbox.submit(self._send_now, sender, text, finish, prompt_tokens, completion_tokens, final)

    def _send_now(self, sender, text, finish, prompt_tokens, completion_tokens, final):
        outputs = [
            pb_utils.Tensor("text", np.array([text.encode("utf-8")], dtype=np.object_)),
            pb_utils.Tensor("finish_reason", np.array([finish.encode("utf-8")], dtype=np.object_)),
            pb_utils.Tensor("prompt_tokens", np.array([prompt_tokens], dtype=np.int32)),
            pb_utils.Tensor("completion_tokens", np.array([completion_tokens], dtype=np.int32)),
        ]
        try:
            sender.send(pb_utils.InferenceResponse(output_tensors=outputs),
                        flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL if final else 0)
        except Exception as exc:  # noqa: BLE001 - on this thread nobody else would see it
            try:   # end the stream with the error, if it is still open
                self._fail(sender, f"sending a response failed: {exc}")
            except Exception:  # noqa: BLE001 - already closed (the client went away)
                pass

    def _generate(self, sender, job):
        try:
            ids = self._prompt_ids(job["messages"])
            if len(ids) >= self.context:
                # the prefix is the gateway's cue for a 400 (contract.GEN_ERROR_CONTEXT_EXCEEDED)
                self._fail(sender, f"context_length_exceeded: the prompt has {len(ids)} tokens; the model's "
                                   f"context is {self.context}")
                return
            max_tokens = job["max_tokens"] if job["max_tokens"] > 0 else self.default_max_tokens
            max_tokens = min(max_tokens, self.context - len(ids))
            search = og.GeneratorParams(self.model)
            search.set_search_options(**search_options(job, len(ids), max_tokens, self.vocab_size))
            gen = og.Generator(self.model, search)
            gen.append_tokens(ids)
            stream = self.tokenizer.create_stream()
            stops = job["stop"]
            pending, completion, finish = "", 0, "length"
            cancelled = getattr(sender, "is_cancelled", lambda: False)
            while not gen.is_done():
                if cancelled():
                    # a cancelled request still ends with a final response (Triton's python backend)
                    self.outbox.submit(self._close, sender)
                    return
                gen.generate_next_token()
                token = int(gen.get_next_tokens()[0])
                if token in self.eos:
                    finish = "stop"
                    break
                completion += 1
                pending += stream.decode(token)
                if stops:
                    hits = [pending.find(s) for s in stops if s in pending]
                    if hits:
                        pending = pending[:min(hits)]
                        finish = "stop"
                        break
                    keep = held_back(pending, stops)
                    ready, pending = (pending[:len(pending) - keep], pending[len(pending) - keep:]) if keep \
                        else (pending, "")
                else:
                    ready, pending = pending, ""
                if ready:
                    self._send(sender, ready, "", len(ids), completion)
                if completion >= max_tokens:
                    break
            self._send(sender, pending, finish, len(ids), completion, final=True)
        except Exception as exc:  # noqa: BLE001
            # after the responses already queued for this request
            self.outbox.submit(self._fail, sender, f"generation failed: {type(exc).__name__}: {exc}")

    def finalize(self):
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.outbox.shutdown(wait=True)
