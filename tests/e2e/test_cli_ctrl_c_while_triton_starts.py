"""Ctrl-C while `tuneline run` waits for Triton to become ready, with the real tritonserver: the
server is stopped and the deployment says it was interrupted. Triton was recorded only once ready,
so it was left running, untracked (`tuneline stop` found nothing), and the status stayed
Progressing. SIGTERM (`kill`, a CI runner stopping) and SIGHUP (a closed terminal) end the run the
same way; they used to kill the CLI outright, with none of that clean-up. The model here is a test model whose loading takes a minute, so that the Ctrl-C
lands while Triton is starting."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SLOW_LOADING_MODEL = '''
import time


class TritonPythonModel:
    def initialize(self, args):
        time.sleep(60)   # a large model's load, in short

    def execute(self, requests):
        return []
'''


@pytest.mark.parametrize("sent,how", [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM"),
                                      (signal.SIGHUP, "SIGHUP")])
def test_ctrl_c_while_triton_starts_stops_it_and_says_so(tmp_path, sent, how):
    import psutil

    model = tmp_path / "repository" / "intents"
    shutil.copytree(REPO / "tests/e2e/gateway_models/tiny_classifier", model)
    config = model / "config.pbtxt"
    config.write_text(config.read_text().replace('name: "tiny_classifier"', 'name: "intents"'))
    (model / "1" / "model.py").write_text(SLOW_LOADING_MODEL)
    manifest = tmp_path / "md.yaml"
    manifest.write_text(f"""apiVersion: tuneline.io/v1alpha1
kind: ModelDeployment
metadata: {{name: intents}}
spec:
  model: {{uri: "file://{tmp_path / 'repository'}"}}
  task: sequence-classification
  resources: {{gpus: 0}}
""")
    state = tmp_path / "state"
    cli = subprocess.Popen([sys.executable, "-m", "tuneline.cli", "run", "-f", str(manifest)], cwd=REPO,
                           env={**os.environ, "TUNELINE_STATE_DIR": str(state)},
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline, triton = time.monotonic() + 120, []
    while not triton and time.monotonic() < deadline and cli.poll() is None:
        triton = [p for p in psutil.Process(cli.pid).children(recursive=True) if "tritonserver" in p.name()]
        time.sleep(0.5)
    try:
        assert triton, "tritonserver did not start"
        time.sleep(3)   # well into its start, long before the model is loaded
        cli.send_signal(sent)
        output, _ = cli.communicate(timeout=120)
        assert cli.returncode == 130, output[-3000:]
        time.sleep(2)
        alive = [p for p in triton if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert alive == [], [p.cmdline() for p in alive]
    finally:   # a failing run leaves nothing behind
        for p in triton:
            if p.is_running():
                p.kill()
        if cli.poll() is None:
            cli.kill()
    status = json.loads((state / "runs" / "modeldeployment-intents" / "status.json").read_text())
    assert status["phase"] == "Stopped" and status["message"] == f"interrupted while starting ({how})"
