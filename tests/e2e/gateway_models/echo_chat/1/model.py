"""TEST MODEL standing in for the real exported chat generator.

The real one (SmolLM2 through ONNX Runtime GenAI, a decoupled Python-backend model) is built by
``tuneline_workloads.triton.repository`` and tested by the export engineer's tests. This one follows
the same generation contract (``tuneline_workloads.contract``: inputs ``messages_json``,
``max_tokens``, ``temperature``, ``top_p``, ``seed``, ``stop_json``; streamed outputs ``text``,
``finish_reason``, ``prompt_tokens``, ``completion_tokens``) so that the gateway runs against the
real ``tritonserver`` without a trained model.

What it "generates", one word per response with ``token_delay_s`` between words:

    "You said: <the last user message>"

where a word ``count:N`` becomes ``1 2 ... N`` (long answers) and ``rev:abc`` becomes ``cba`` (an
output the input does not contain, to test the output filter). It honours ``max_tokens``
(finish_reason "length") and stop strings (the text before the stop string, finish "stop"), and
counts tokens as words. Each request runs on its own thread, so one instance serves many
concurrent streams, as a continuous-batching generator would.
"""

import json
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils


def _words(messages):
    user = [m.get("content") or "" for m in messages if m.get("role") == "user"]
    out = ["You", "said:"]
    for word in (user[-1] if user else "").split():
        if word.startswith("count:") and word[6:].isdigit():
            out += [str(i) for i in range(1, min(int(word[6:]), 100000) + 1)]
        elif word.startswith("rev:"):
            out.append(word[4:][::-1])
        else:
            out.append(word)
    return out


def _tensor(name, value, dtype):
    return pb_utils.Tensor(name, np.array([value], dtype=dtype))


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = config.get("parameters", {})
        self.delay = float(params.get("token_delay_s", {}).get("string_value", "0.01"))
        self.inflight = 0
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)

    def execute(self, requests):
        for request in requests:
            with self.lock:
                self.inflight += 1
            threading.Thread(target=self._generate, args=(request,), daemon=True).start()
        return None

    def _generate(self, request):
        sender = request.get_response_sender()
        try:
            def get(name):
                return pb_utils.get_input_tensor_by_name(request, name).as_numpy().reshape(-1)[0]

            messages = json.loads(get("messages_json"))
            max_tokens = int(get("max_tokens"))
            stops = json.loads(get("stop_json") or b"[]")
            prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in messages)
            words = _words(messages)
            text, emitted, finish = "", 0, "stop"
            for i, word in enumerate(words):
                if request.is_cancelled():
                    sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                    return
                if emitted >= max_tokens:
                    finish = "length"
                    break
                piece = word if i == 0 else " " + word
                candidate = text + piece
                cut = min((candidate.find(s) for s in stops if s and s in candidate), default=-1)
                if cut >= 0:
                    piece = candidate[len(text):cut] if cut > len(text) else ""
                    if piece:
                        emitted += 1
                        sender.send(self._response(piece, "", prompt_tokens, emitted))
                    break
                time.sleep(self.delay)
                text = candidate
                emitted += 1
                last = i == len(words) - 1 and emitted <= max_tokens
                if last:
                    # the last word carries the finish reason: one response, flagged final
                    sender.send(self._response(piece, "stop", prompt_tokens, emitted),
                                flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                    return
                sender.send(self._response(piece, "", prompt_tokens, emitted))
            # a separate (empty-text) last response carries the finish reason
            sender.send(self._response("", finish, prompt_tokens, emitted),
                        flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except Exception as exc:  # noqa: BLE001 - reported to the client as a Triton error
            sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"echo_chat: {exc}")),
                        flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        finally:
            with self.lock:
                self.inflight -= 1
                self.idle.notify_all()

    @staticmethod
    def _response(text, finish, prompt_tokens, completion_tokens):
        return pb_utils.InferenceResponse(output_tensors=[
            _tensor("text", text.encode(), np.object_),
            _tensor("finish_reason", finish.encode(), np.object_),
            _tensor("prompt_tokens", prompt_tokens, np.int32),
            _tensor("completion_tokens", completion_tokens, np.int32),
        ])

    def finalize(self):
        # let in-flight streams finish before the instance goes away (a reload must not cut them)
        with self.lock:
            self.idle.wait_for(lambda: self.inflight == 0, timeout=30)
