"""`tuneline apply` and `tuneline get` against the real control plane, run as a user runs them: a
subprocess reading the kubeconfig from $KUBECONFIG (or --kubeconfig), checked against kubectl."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.controlplane

REPO = Path(__file__).resolve().parents[2]
BANK = REPO / "examples" / "bank-assistant.yaml"
INTENTS = REPO / "examples" / "intent-classifier.yaml"
INVALID = REPO / "tests" / "manifests" / "invalid" / "ftj-lora-rank-zero.yaml"

CREATED = [
    "finetunejob.tuneline.io/bank-assistant",
    "modeldeployment.tuneline.io/bank-assistant",
    "finetunejob.tuneline.io/bank-intents",
    "modeldeployment.tuneline.io/bank-intents",
]


def tl(cp, *args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig or cp.kubeconfig)}
    return subprocess.run([sys.executable, "-m", "tuneline.cli", *args], capture_output=True, text=True,
                          timeout=120, env=env, cwd=REPO)


def kubectl_names(cp, ns: str) -> list[str]:
    return sorted(cp.kubectl("get", "ftj,mdep", "-n", ns, "-o", "name").stdout.split())


def table(text: str) -> list[list[str]]:
    """Rows of a kubectl-style table (columns start where a header word starts after 2+ spaces)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    header = lines[0]
    starts = [0] + [i for i in range(2, len(header)) if header[i] != " " and header[i - 2:i] == "  "]
    return [[ln[a:b].strip() for a, b in zip(starts, starts[1:] + [None])] for ln in lines]


def edited(tmp_path: Path, source: Path, old: str, new: str) -> Path:
    text = source.read_text()
    assert old in text
    out = tmp_path / source.name
    out.write_text(text.replace(old, new))
    return out


def test_apply_creates_then_reapply_is_unchanged_and_get_shows_them(control_plane, namespace, tmp_path):
    cp, ns = control_plane, namespace
    r = tl(cp, "apply", "-f", str(BANK), "-f", str(INTENTS), "-n", ns)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"{ref} created" for ref in CREATED]
    assert kubectl_names(cp, ns) == sorted(CREATED)
    managers = json.loads(cp.kubectl("get", "ftj", "bank-assistant", "-n", ns, "-o", "json",
                                     "--show-managed-fields").stdout)["metadata"]["managedFields"]
    assert {(m["manager"], m["operation"]) for m in managers} == {("tuneline-cli", "Apply")}

    # the same files again: nothing changes
    r = tl(cp, "apply", "-f", str(BANK), "-f", str(INTENTS), "-n", ns)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"{ref} unchanged" for ref in CREATED]

    # one field changed: that object is configured, the others unchanged
    changed = edited(tmp_path, BANK, "activeDeadlineSeconds: 86400", "activeDeadlineSeconds: 7200")
    r = tl(cp, "apply", "-f", str(changed), "-n", ns)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["finetunejob.tuneline.io/bank-assistant configured",
                                     "modeldeployment.tuneline.io/bank-assistant unchanged"]
    got = cp.kubectl("get", "ftj", "bank-assistant", "-n", ns, "-o", "jsonpath={.spec.activeDeadlineSeconds}")
    assert got.stdout == "7200"

    # --dry-run=server reports what would happen and stores nothing
    dry = edited(tmp_path, BANK, "activeDeadlineSeconds: 86400", "activeDeadlineSeconds: 3600")
    r = tl(cp, "apply", "-f", str(dry), "-n", ns, "--dry-run=server")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "finetunejob.tuneline.io/bank-assistant configured (server dry run)"
    got = cp.kubectl("get", "ftj", "bank-assistant", "-n", ns, "-o", "jsonpath={.spec.activeDeadlineSeconds}")
    assert got.stdout == "7200"

    # get: the printer columns, after the status moves
    cp.kubectl("patch", "ftj", "bank-assistant", "-n", ns, "--subresource=status", "--type=merge", "-p",
               json.dumps({"status": {"phase": "Training", "progress": {"percent": 46}}}))
    r = tl(cp, "get", "ftj", "-n", ns)
    assert r.returncode == 0, r.stderr
    rows = table(r.stdout)
    assert rows[0] == ["NAME", "PHASE", "PROGRESS", "METHOD", "EVAL LOSS", "VERSION", "AGE"]
    by_name = {row[0]: dict(zip(rows[0], row)) for row in rows[1:]}
    assert sorted(by_name) == ["bank-assistant", "bank-intents"]
    assert (by_name["bank-assistant"]["PHASE"], by_name["bank-assistant"]["PROGRESS"],
            by_name["bank-assistant"]["METHOD"]) == ("Training", "46", "lora")
    assert by_name["bank-intents"]["METHOD"] == "full"
    assert by_name["bank-assistant"]["AGE"].endswith(("s", "m"))

    r = tl(cp, "get", "mdep", "bank-intents", "-n", ns, "-o", "wide")
    assert r.returncode == 0, r.stderr
    rows = table(r.stdout)
    assert rows[0][:2] == ["NAME", "PHASE"] and "READY" in rows[0] and "URL" in rows[0] and "AGE" in rows[0]
    assert [row[0] for row in rows[1:]] == ["bank-intents"]

    # all (the default): both kinds, names qualified like `kubectl get all`
    r = tl(cp, "get", "-n", ns)
    assert r.returncode == 0, r.stderr
    for ref in CREATED:
        assert ref in r.stdout
    r = tl(cp, "get", "all", "-n", ns, "-o", "name")
    assert sorted(r.stdout.split()) == sorted(CREATED)

    # json / yaml: the objects themselves, without managedFields
    r = tl(cp, "get", "mdep", "bank-intents", "-n", ns, "-o", "json")
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert (obj["kind"], obj["metadata"]["name"], obj["spec"]["replicas"]) == ("ModelDeployment", "bank-intents", 2)
    assert "managedFields" not in obj["metadata"]
    r = tl(cp, "get", "finetunejobs", "-n", ns, "-o", "yaml")
    assert r.returncode == 0, r.stderr
    listed = yaml.safe_load(r.stdout)
    assert listed["kind"] == "List"
    assert sorted(i["metadata"]["name"] for i in listed["items"]) == ["bank-assistant", "bank-intents"]

    # no -n: the namespace comes from the kubeconfig's current context
    config = yaml.safe_load(Path(cp.kubeconfig).read_text())
    current = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    current["context"]["namespace"] = ns
    scoped = tmp_path / "kubeconfig"
    scoped.write_text(yaml.safe_dump(config))
    r = tl(cp, "get", "ftj/bank-intents", kubeconfig=scoped)
    assert r.returncode == 0, r.stderr
    assert table(r.stdout)[1][0] == "bank-intents"
    r = tl(cp, "get", "ftj", "bank-intents", "--kubeconfig", str(scoped), "-o", "name",
           kubeconfig=Path("/nonexistent"))
    assert (r.returncode, r.stdout.strip()) == (0, "finetunejob.tuneline.io/bank-intents"), r.stderr


def test_invalid_document_is_exit_2_and_nothing_is_sent(control_plane, namespace):
    cp, ns = control_plane, namespace
    # a valid file first: it must not be applied either
    r = tl(cp, "apply", "-f", str(BANK), "-f", str(INVALID), "-n", ns)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert f"{INVALID} (document 0): spec.method.lora.r:" in r.stderr
    assert r.stdout == ""
    assert kubectl_names(cp, ns) == []


def test_server_side_cel_rejection_is_printed_and_exit_1(control_plane, namespace, tmp_path):
    """spec.baseModel is immutable once training started: only the API server (a CEL transition rule)
    can know, so local validation passes and the server's message reaches the user."""
    cp, ns = control_plane, namespace
    assert tl(cp, "apply", "-f", str(BANK), "-n", ns).returncode == 0
    cp.kubectl("patch", "ftj", "bank-assistant", "-n", ns, "--subresource=status", "--type=merge", "-p",
               json.dumps({"status": {"phase": "Training"}}))
    changed = edited(tmp_path, BANK, "pvc://models/smollm2-135m-instruct", "pvc://models/smollm2-360m-instruct")
    assert tl(cp, "validate", "-f", str(changed)).returncode == 0

    r = tl(cp, "apply", "-f", str(changed), "-n", ns)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "finetunejob.tuneline.io/bank-assistant" in r.stderr
    assert "rejected by the API server (Invalid)" in r.stderr and "spec.baseModel" in r.stderr, r.stderr
    # the other document of the file is still applied
    assert r.stdout.splitlines() == ["modeldeployment.tuneline.io/bank-assistant unchanged"]
    uri = cp.kubectl("get", "ftj", "bank-assistant", "-n", ns, "-o", "jsonpath={.spec.baseModel.uri}").stdout
    assert uri == "pvc://models/smollm2-135m-instruct"

    # --dry-run=server meets the same rule
    r = tl(cp, "apply", "-f", str(changed), "-n", ns, "--dry-run=server", "-o", "json")
    assert r.returncode == 1
    results = json.loads(r.stdout)["results"]
    assert results[0]["reason"] == "Invalid" and "spec.baseModel" in results[0]["error"]


def test_get_missing_name_is_exit_1(control_plane, namespace):
    cp, ns = control_plane, namespace
    r = tl(cp, "get", "ftj", "nope", "-n", ns)
    assert r.returncode == 1
    assert "finetunejob.tuneline.io 'nope' not found" in r.stderr and ns in r.stderr, r.stderr
    for args in (["mdep/nope"], ["all", "nope"], ["mdep", "nope", "-o", "json"]):
        r = tl(cp, "get", *args, "-n", ns)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert "not found" in r.stderr and r.stdout == ""
    # an empty namespace is not an error
    r = tl(cp, "get", "-n", ns)
    assert r.returncode == 0 and f"No resources found in {ns} namespace." in r.stderr
    # a type that is not tuneline's is bad input
    assert tl(cp, "get", "pods", "-n", ns).returncode == 2
