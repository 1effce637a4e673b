"""values.schema.json: the defaults validate, and bad values are rejected by ``helm template``
(and by the schema itself, checked with jsonschema)."""

from __future__ import annotations

import json

import pytest
import yaml

from chart_helpers import CHART, helm_bin, render

jsonschema = pytest.importorskip("jsonschema")
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())

BAD = {
    "unknown-scope": {"rbac": {"scope": "everywhere"}},
    "wildcard-secret": {"rbac": {"secretNames": ["*"]}},
    "bad-namespace": {"rbac": {"watchNamespaces": ["Team_A"]}},
    "root-user": {"operator": {"runAsUser": 0}},
    "zero-replicas": {"operator": {"replicas": 0}},
    "latest-image": {"images": {"trainer": "ghcr.io/tuneline/trainer:latest"}},
    "untagged-image": {"images": {"triton": "ghcr.io/tuneline/triton"}},
    "latest-operator-tag": {"operator": {"image": {"tag": "latest"}}},
    "unknown-key": {"operator": {"replica": 2}},
    "string-port": {"metrics": {"port": "8080"}},
    "negative-requeue": {"settings": {"requeueSeconds": -1}},
    "unknown-setting": {"settings": {"debugEverything": True}},
    "bad-cidr": {"networkPolicy": {"apiServer": {"cidrs": ["everywhere"]}}},
    "bad-metric-name": {"prometheusAdapter": {"metricName": "gpu util"}},
    # it becomes part of every object's name
    "bad-name-override": {"nameOverride": "Tune_Line"},
}


def merged(override):
    def merge(a, b):
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
        return out
    return merge(DEFAULTS, override)


def test_defaults_validate():
    jsonschema.validate(DEFAULTS, SCHEMA)


@pytest.mark.parametrize("name", sorted(BAD))
def test_schema_rejects(name):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(merged(BAD[name]), SCHEMA)


@pytest.mark.skipif(helm_bin() is None, reason="helm not built yet: run hack/build-controlplane.sh")
@pytest.mark.parametrize("name", ["unknown-scope", "wildcard-secret", "root-user", "latest-image", "unknown-key"])
def test_helm_template_rejects(name):
    r = render(BAD[name], check=False)
    assert r.returncode != 0
    assert "values don't meet the specifications of the schema" in r.stderr or "schema" in r.stderr
