"""Serving manifests of a ModelDeployment against golden YAML (UPDATE_GOLDEN=1 rewrites
tests/unit/golden/serving/), plus the properties every one of them must have."""

from __future__ import annotations

import pytest

from serving_cases import CANARY_MODEL, CASES, MODEL, SETTINGS, case_md, check_golden, md
from tuneline.builders.common import MANAGED_BY
from tuneline.builders.serving import MD_LABEL, REVISION_LABEL, build_serving


@pytest.mark.parametrize("case", sorted(CASES))
def test_stable_objects_match_golden(case):
    check_golden(f"{case}-stable", build_serving(case_md(case), (3, CASES[case][1]), None, 0, SETTINGS))


def test_canary_objects_match_golden():
    check_golden("gpu-hpa-canary", build_serving(md(), (3, MODEL), (4, CANARY_MODEL), 10, SETTINGS))


def test_gateway_canary_objects_match_golden():
    m = case_md("s3-keda-gateway")
    model = CASES["s3-keda-gateway"][1]
    check_golden("s3-keda-gateway-canary", build_serving(m, (1, model), (2, model), 50, SETTINGS))


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_object_is_owned_and_labelled(case):
    m = case_md(case)
    for obj in build_serving(m, (3, CASES[case][1]), (4, CASES[case][1]), 10, SETTINGS):
        meta = obj["metadata"]
        assert meta["ownerReferences"] == [{"apiVersion": "tuneline.io/v1alpha1", "kind": "ModelDeployment",
                                            "name": "bank-assistant", "uid": m.metadata.uid,
                                            "controller": True, "blockOwnerDeletion": True}], obj["kind"]
        assert meta["labels"][MANAGED_BY] == "tuneline" and meta["labels"][MD_LABEL] == "bank-assistant"
        assert meta["namespace"] == "team-a"
        if obj["kind"] in ("Deployment", "ConfigMap"):
            assert meta["labels"][REVISION_LABEL] in ("3", "4")


def test_building_without_a_uid_is_refused():
    body = md().model_dump(by_alias=True, mode="json", exclude_none=True)
    del body["metadata"]["uid"]
    from tuneline.api import ModelDeployment
    with pytest.raises(ValueError, match="uid"):
        build_serving(ModelDeployment.model_validate(body), (1, MODEL), None, 0, SETTINGS)
