"""`tuneline apply` / `tuneline get` without a cluster: argument handling, the apply verdict, the
kubectl-style table, ages, and the exit codes of what fails before (or instead of) a cluster answers.
The cluster side is tests/integration/test_cli_apply_get.py."""

from __future__ import annotations

import json
import socket
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tuneline import cluster
from tuneline.cli import EXIT_BAD_INPUT, EXIT_FAILED, app

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
BANK = REPO / "examples" / "bank-assistant.yaml"
INVALID = REPO / "tests" / "manifests" / "invalid" / "ftj-lora-rank-zero.yaml"


# --- pure helpers ------------------------------------------------------------------------------------

@pytest.mark.parametrize("arg, kinds", [
    ("ftj", ["FineTuneJob"]), ("finetunejobs", ["FineTuneJob"]), ("FineTuneJob", ["FineTuneJob"]),
    ("finetunejobs.tuneline.io", ["FineTuneJob"]), ("mdep", ["ModelDeployment"]),
    ("modeldeployment", ["ModelDeployment"]), ("all", ["FineTuneJob", "ModelDeployment"]),
    ("tuneline", ["FineTuneJob", "ModelDeployment"]),
])
def test_resource_type_aliases(arg, kinds):
    assert [rt.kind for rt in cluster.resolve_types(arg)] == kinds


def test_get_arguments_kubectl_style():
    assert cluster.parse_get_args(None, None) == (cluster.RESOURCE_TYPES, None)
    assert cluster.parse_get_args("ftj", "a") == ((cluster.FINETUNEJOB,), "a")
    assert cluster.parse_get_args("mdep/b", None) == ((cluster.MODELDEPLOYMENT,), "b")
    for resource, name in [("pods", None), ("ftj/a", "b"), ("ftj/", None), ("all/a", None)]:
        with pytest.raises(ValueError):
            cluster.parse_get_args(resource, name)


def test_apply_verdict():
    before = {"metadata": {"name": "a", "resourceVersion": "1", "generation": 1,
                           "managedFields": [{"manager": "kubectl"}]}, "spec": {"x": 1}}
    same = {"metadata": {"name": "a", "resourceVersion": "2", "generation": 1,
                         "managedFields": [{"manager": "tuneline-cli"}]}, "spec": {"x": 1}}
    changed = {"metadata": {"name": "a", "resourceVersion": "2", "generation": 2}, "spec": {"x": 2}}
    relabelled = {"metadata": {"name": "a", "resourceVersion": "2", "labels": {"t": "a"}}, "spec": {"x": 1}}
    assert cluster.apply_verdict(None, same) == "created"
    assert cluster.apply_verdict(before, same) == "unchanged"
    assert cluster.apply_verdict(before, changed) == "configured"
    assert cluster.apply_verdict(before, relabelled) == "configured"
    assert before["metadata"]["managedFields"]  # inputs untouched


def test_target_namespace():
    doc = {"metadata": {"name": "a"}}
    assert cluster.target_namespace(doc, None, "ctx-ns") == "ctx-ns"
    assert cluster.target_namespace(doc, "flag", "ctx-ns") == "flag"
    own = {"metadata": {"name": "a", "namespace": "own"}}
    assert cluster.target_namespace(own, None, "ctx-ns") == "own"
    assert cluster.target_namespace(own, "own", "ctx-ns") == "own"
    with pytest.raises(ValueError, match="does not match"):
        cluster.target_namespace(own, "other", "ctx-ns")


@pytest.mark.parametrize("seconds, text", [
    (-5, "<invalid>"), (0, "0s"), (59, "59s"), (119, "119s"), (120, "2m"), (200, "3m20s"), (900, "15m"),
    (3 * 3600 - 1, "179m"), (5 * 3600 + 180, "5h3m"), (8 * 3600, "8h"), (47 * 3600, "47h"),
    (52 * 3600, "2d4h"), (3 * 86400, "3d"), (40 * 86400, "40d"), (3 * 365 * 86400 + 20 * 86400, "3y20d"),
    (10 * 365 * 86400, "10y"),
])
def test_human_age_matches_kubectl(seconds, text):
    assert cluster.human_age(seconds) == text


def _table():
    now = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)
    created = (now - timedelta(minutes=3, seconds=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return now, {
        "kind": "Table",
        "columnDefinitions": [
            {"name": "Name", "type": "string", "priority": 0},
            {"name": "Phase", "type": "string", "priority": 0},
            {"name": "Eval Loss", "type": "number", "priority": 0},
            {"name": "Base Model", "type": "string", "priority": 1},
            {"name": "Age", "type": "date", "priority": 0},
        ],
        "rows": [
            {"cells": ["bank-assistant", "Training", 1.34, "pvc://m", created],
             "object": {"metadata": {"name": "bank-assistant", "namespace": "team-a"}}},
            {"cells": ["x", None, 2.0, None, created], "object": {"metadata": {"name": "x", "namespace": "b"}}},
        ],
    }


def test_table_rows_printer_columns_wide_namespace_and_qualified_names():
    now, table = _table()
    headers, rows = cluster.table_rows(table, cluster.FINETUNEJOB, now=now)
    assert headers == ["NAME", "PHASE", "EVAL LOSS", "AGE"]
    assert rows == [["bank-assistant", "Training", "1.34", "3m20s"], ["x", "", "2", "3m20s"]]

    headers, rows = cluster.table_rows(table, cluster.FINETUNEJOB, wide=True, with_namespace=True, qualify=True,
                                       now=now)
    assert headers == ["NAMESPACE", "NAME", "PHASE", "EVAL LOSS", "BASE MODEL", "AGE"]
    assert rows[0] == ["team-a", "finetunejob.tuneline.io/bank-assistant", "Training", "1.34", "pvc://m", "3m20s"]


def test_format_columns_like_kubectl():
    text = cluster.format_columns(["NAME", "PHASE", "AGE"], [["bank-assistant", "", "5s"], ["x", "Failed", "12m"]])
    assert text.splitlines() == [
        "NAME             PHASE    AGE",
        "bank-assistant            5s",
        "x                Failed   12m",
    ]


def test_server_message_prefers_the_status_message():
    body = json.dumps({"kind": "Status", "reason": "Invalid", "message": "spec.baseModel is immutable"})
    err = cluster.ApiError(422, "Unprocessable Entity", body)
    assert cluster.server_message(err) == "spec.baseModel is immutable"
    assert cluster.server_reason(err) == "Invalid"
    assert cluster.is_status_body(err)
    raw = cluster.ApiError(404, "Not Found", "404 page not found\n")
    assert cluster.server_message(raw) == "404 page not found" and not cluster.is_status_body(raw)


# --- the commands, before or without a cluster ---------------------------------------------------------

@pytest.fixture
def dead_kubeconfig(tmp_path) -> Path:
    """A kubeconfig whose server refuses connections (a port nothing listens on)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "dead",
        "clusters": [{"name": "dead", "cluster": {"server": f"https://127.0.0.1:{port}",
                                                  "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "dead", "context": {"cluster": "dead", "user": "u", "namespace": "team-a"}}],
    }))
    return path


def test_apply_invalid_manifest_is_bad_input_before_any_connection(dead_kubeconfig):
    result = runner.invoke(app, ["apply", "-f", str(BANK), "-f", str(INVALID), "--kubeconfig", str(dead_kubeconfig)])
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert f"{INVALID} (document 0): spec.method.lora.r:" in result.output
    assert "cannot reach" not in result.output

    result = runner.invoke(app, ["apply", "-f", str(INVALID), "-o", "json", "--kubeconfig", str(dead_kubeconfig)])
    assert result.exit_code == EXIT_BAD_INPUT
    assert json.loads(result.stdout)["errors"][0]["field"] == "spec.method.lora.r"


def test_unreachable_cluster_is_one_line_naming_the_server(dead_kubeconfig):
    server = yaml.safe_load(dead_kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    for args in (["apply", "-f", str(BANK)], ["get"], ["get", "ftj", "bank-assistant"]):
        result = runner.invoke(app, [*args, "--kubeconfig", str(dead_kubeconfig)])
        assert result.exit_code == EXIT_FAILED, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and server in lines[0] and "cannot reach" in lines[0], result.output


def test_kubeconfig_and_context_mistakes_are_bad_input(dead_kubeconfig, tmp_path):
    result = runner.invoke(app, ["get", "--kubeconfig", str(tmp_path / "nope")])
    assert result.exit_code == EXIT_BAD_INPUT and "file not found" in result.output
    result = runner.invoke(app, ["get", "--kubeconfig", str(dead_kubeconfig), "--context", "other"])
    assert result.exit_code == EXIT_BAD_INPUT and "no such context" in result.output and "dead" in result.output


def test_get_bad_arguments_are_bad_input(dead_kubeconfig):
    for args in (["pods"], ["ftj/a", "b"], ["ftj", "a", "-A"], ["ftj", "-o", "table"]):
        result = runner.invoke(app, ["get", *args, "--kubeconfig", str(dead_kubeconfig)])
        assert result.exit_code == EXIT_BAD_INPUT, (args, result.output)


def test_apply_namespace_mismatch_is_bad_input(dead_kubeconfig, tmp_path):
    docs = [d for d in yaml.safe_load_all(BANK.read_text()) if d]
    docs[0]["metadata"]["namespace"] = "team-b"
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    result = runner.invoke(app, ["apply", "-f", str(manifest), "-n", "team-c", "--kubeconfig", str(dead_kubeconfig)])
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert "does not match" in result.output


def test_apply_nothing_to_apply_is_bad_input(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("---\n")
    result = runner.invoke(app, ["apply", "-f", str(empty)])
    assert result.exit_code == EXIT_BAD_INPUT and "no objects passed to apply" in result.output


def test_help_lists_apply_and_get():
    result = runner.invoke(app, ["--help"])
    assert "apply" in result.output and "get" in result.output
    for command in ("apply", "get"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "--kubeconfig" in result.output and "--namespace" in result.output
