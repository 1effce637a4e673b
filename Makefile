# The targets the README tells people to type. Everything installs itself on a fresh machine.
SHELL := /bin/bash
PY := .venv/bin/python
STATE := .tuneline

.PHONY: demo demo-classifier test test-unit test-integration test-e2e setup controlplane crds check-crds bench bench-smoke clean

## demo: the main job — LoRA-tune SmolLM2 on the bank data, gate, export (ORT GenAI), serve (Triton + gateway), compare
demo: setup
	$(PY) -m tuneline.cli run -f examples/bank-assistant.yaml --volume data=examples/data --volume models=$(STATE)/models --report

## demo-classifier: the fast example — MiniLM intent classifier, ONNX + INT8, served by Triton
demo-classifier: setup
	$(PY) -m tuneline.cli run -f examples/intent-classifier.yaml --volume data=examples/data --volume models=$(STATE)/models

## test: every test tier (unit, integration on a real control plane, e2e with real models and Triton)
test: setup controlplane
	$(PY) -m pytest tests -p no:cacheprovider

test-unit: setup
	$(PY) -m pytest tests/unit -q

test-integration: setup controlplane
	$(PY) -m pytest tests/integration -q

test-e2e: setup
	$(PY) -m pytest tests/e2e -q

setup:
	@bash hack/setup-python.sh

controlplane:
	@bash hack/build-controlplane.sh >/dev/null

## crds: regenerate crds/, docs/api-reference.md and the chart's copy from the API models
crds: setup
	$(PY) -m tuneline.api.crdgen
	bash charts/sync-crds.sh

check-crds: setup
	$(PY) -m tuneline.api.crdgen --check
	bash charts/sync-crds.sh --check

## bench: the benchmark suite (~50 min on 2 cores; writes benchmarks/report.md + report.json + plots/)
bench: setup controlplane
	$(PY) -m benchmarks.run

## bench-smoke: every benchmark at tiny size (CI): proves the suite runs; report under benchmarks/results/smoke/
bench-smoke: setup controlplane
	$(PY) -m benchmarks.run --smoke

clean:
	rm -rf $(STATE)
