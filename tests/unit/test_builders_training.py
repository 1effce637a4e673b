"""RayJob, its ConfigMap and the workload identity, against golden YAML (UPDATE_GOLDEN=1 rewrites)."""

from __future__ import annotations

import pytest
import yaml

from builder_cases import CASES, SETTINGS, check_golden, job
from tuneline.builders import (ATTEMPT_LABEL, JOB_LABEL, KUEUE_QUEUE_LABEL, MANAGED_BY, build_attempt, build_rayjob,
                               build_training_configmap, rayjob_name)
from tuneline.builders.common import child_name


@pytest.mark.parametrize("case", sorted(CASES))
def test_attempt_objects_match_golden(case):
    check_golden(f"attempt-{case}", build_attempt(job(**CASES[case]), 1, SETTINGS))


def _pods(rayjob):
    cluster = rayjob["spec"]["rayClusterSpec"]
    return {"head": cluster["headGroupSpec"]["template"]["spec"],
            "worker": cluster["workerGroupSpecs"][0]["template"]["spec"],
            "submitter": rayjob["spec"]["submitterPodTemplate"]["spec"]}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_object_is_owned_and_labelled(case):
    j = job(**CASES[case])
    for obj in build_attempt(j, 2, SETTINGS):
        meta = obj["metadata"]
        assert meta["ownerReferences"] == [{"apiVersion": "tuneline.io/v1alpha1", "kind": "FineTuneJob",
                                            "name": "bank-assistant", "uid": j.metadata.uid,
                                            "controller": True, "blockOwnerDeletion": True}]
        assert meta["labels"][MANAGED_BY] == "tuneline" and meta["labels"][JOB_LABEL] == "bank-assistant"
        assert meta["namespace"] == "team-a"
    rj = build_rayjob(j, 2, SETTINGS)
    assert rj["metadata"]["labels"][ATTEMPT_LABEL] == "2"
    assert build_training_configmap(j, 2, SETTINGS)["metadata"]["labels"][ATTEMPT_LABEL] == "2"


@pytest.mark.parametrize("case", sorted(CASES))
def test_pods_pass_podsecurity_restricted(case):
    for role, pod in _pods(build_rayjob(job(**CASES[case]), 1, SETTINGS)).items():
        assert pod["securityContext"]["runAsNonRoot"] is True, role
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
        for v in pod["volumes"]:
            assert set(v) & {"configMap", "emptyDir", "persistentVolumeClaim"}, v  # no hostPath


def test_gpu_workers_get_gpus_toleration_and_shm():
    rj = build_rayjob(job(), 1, SETTINGS)
    pods = _pods(rj)
    worker = pods["worker"]
    res = worker["containers"][0]["resources"]
    assert res["limits"]["nvidia.com/gpu"] == "1" and res["requests"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in worker["tolerations"]
    assert worker["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}} in worker["volumes"]
    group = rj["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    assert group["replicas"] == group["minReplicas"] == group["maxReplicas"] == 2
    # the head does not train: no GPU, no GPU toleration
    assert "nvidia.com/gpu" not in pods["head"]["containers"][0]["resources"]["limits"]
    assert "tolerations" not in pods["head"]
    assert rj["spec"]["shutdownAfterJobFinishes"] is True and rj["spec"]["activeDeadlineSeconds"] == 86400
    assert rj["spec"]["suspend"] is False and KUEUE_QUEUE_LABEL not in rj["metadata"]["labels"]


def test_queue_name_creates_the_rayjob_suspended_with_the_kueue_label():
    rj = build_rayjob(job(**CASES["queued-constrained"]), 1, SETTINGS)
    assert rj["spec"]["suspend"] is True
    assert rj["metadata"]["labels"][KUEUE_QUEUE_LABEL] == "team-a-gpus"
    worker = _pods(rj)["worker"]
    assert worker["nodeSelector"] == {"nvidia.com/gpu.present": "true", "pool": "a100"}
    assert worker["priorityClassName"] == "training-high" and worker["serviceAccountName"] == "team-a-trainer"
    assert len(worker["tolerations"]) == 2


def test_cpu_only_job_asks_for_no_gpu():
    rj = build_rayjob(job(**CASES["cpu-only"]), 1, SETTINGS)
    worker = _pods(rj)["worker"]
    assert "nvidia.com/gpu" not in worker["containers"][0]["resources"]["limits"]
    assert "tolerations" not in worker and "nodeSelector" not in worker


def test_entrypoint_reads_the_mounted_spec_and_writes_the_output_volume():
    rj = build_rayjob(job(), 1, SETTINGS)
    assert rj["spec"]["entrypoint"] == ("python -m tuneline_workloads.train --spec /etc/tuneline/finetunejob.yaml "
                                        "--output /mnt/models/bank-assistant")
    mounts = {m["mountPath"]: m for m in _pods(rj)["worker"]["containers"][0]["volumeMounts"]}
    assert mounts["/mnt/models"]["readOnly"] is False      # output claim is writable
    assert mounts["/mnt/data"]["readOnly"] is True
    assert mounts["/etc/tuneline"]["readOnly"] is True
    cm = build_training_configmap(job(), 1, SETTINGS)
    spec_doc = yaml.safe_load(cm["data"]["finetunejob.yaml"])
    assert spec_doc["kind"] == "FineTuneJob" and spec_doc["spec"]["output"]["uri"] == "pvc://models/bank-assistant"
    assert spec_doc["spec"]["hyperparameters"]["learningRate"] == 2.0e-4  # defaults written out


def test_names_are_deterministic_and_fit_kuberay():
    assert rayjob_name("bank-assistant", 3) == "bank-assistant-a3"
    long = "x" * 63
    name = rayjob_name(long, 12)
    assert len(name) <= 47 and name.endswith("-a12") and name == rayjob_name(long, 12)
    assert rayjob_name("1job", 1) == "t1job-a1"  # DNS-1035: starts with a letter
    assert len(child_name(long, "a1-spec")) <= 63
