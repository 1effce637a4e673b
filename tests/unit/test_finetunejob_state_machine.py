"""The FineTuneJob controller's decisions as a pure function: next_action(job, rayjobs, exportJob)."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import pytest

from builder_cases import SETTINGS, raw
from tuneline.controllers.finetunejob_logic import next_action
from tuneline.controllers.handoff import MODEL_VERSION_ANNOTATION

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


class World:
    """The API as the state machine sees it: the job, its RayJobs, its export Job."""

    def __init__(self, **spec):
        self.body = raw(**spec)
        self.rayjobs: dict[str, dict] = {}
        self.export_job: dict | None = None
        self.now = T0
        self.events: list = []

    def step(self, write_status=True):
        act = next_action(copy.deepcopy(self.body), list(self.rayjobs.values()), self.export_job, SETTINGS, self.now)
        for obj in act.create:
            if obj["kind"] == "RayJob":
                self.rayjobs.setdefault(obj["metadata"]["name"], copy.deepcopy(obj))
            elif obj["kind"] == "Job":
                self.export_job = self.export_job or copy.deepcopy(obj)
        for _, kind, name, patch in act.patch:
            target = self.rayjobs[name] if kind == "RayJob" else self.export_job
            target["spec"].update(patch["spec"])
        for _, kind, name in act.delete:
            if kind == "RayJob":
                self.rayjobs.pop(name)
            else:
                self.export_job = None
        if act.delete_children:
            self.rayjobs.clear()
            self.export_job = None
        if write_status:
            self.body["status"] = act.status
            self.events += act.events
        return act

    def run(self, max_steps=10):
        for _ in range(max_steps):
            if self.step().requeue_after != 0:
                return

    @property
    def status(self):
        return self.body["status"]

    def cond(self, type_):
        return next(c for c in self.status["conditions"] if c["type"] == type_)

    def ray(self, name, **status):
        self.rayjobs[name]["status"] = status

    def report(self, **metrics):  # what the trainer patches into status.metrics
        self.status.setdefault("metrics", {}).update(metrics)

    def training(self):
        """Attempt 1's RayJob is created and running, and the job says so."""
        self.run(); self.run()
        self.ray("bank-assistant-a1", jobDeploymentStatus="Running", jobStatus="RUNNING")
        self.run()

    def trained_and_passed_the_gate(self):
        """Attempt 1 trains, reports a passing evalLoss and succeeds; the next reconcile exports."""
        self.run(); self.run()
        self.report(evalLoss=1.0)
        self.ray("bank-assistant-a1", jobStatus="SUCCEEDED")
        self.run()


def test_first_visit_writes_unknown_conditions_then_creates_attempt_one():
    w = World()
    act = w.step()
    assert w.status["phase"] == "Pending" and w.status["startTime"] == "2026-01-01T12:00:00Z"
    assert w.cond("Succeeded")["status"] == "Unknown" and w.cond("Succeeded")["observedGeneration"] == 1
    assert act.requeue_after == 0 and not act.create
    act = w.step()
    assert [o["kind"] for o in act.create] == ["ServiceAccount", "Role", "RoleBinding", "ConfigMap", "RayJob"]
    assert w.status["attempts"] == 1 and w.status["rayJobName"] == "bank-assistant-a1"
    assert any(e.reason == "RayJobCreated" for e in w.events)


def test_a_restart_after_create_before_status_never_creates_a_second_rayjob():
    w = World()
    w.step()
    act = w.step(write_status=False)  # children created, then the operator died
    assert act.create and w.status["attempts"] == 0
    act = w.step()  # restarted operator
    assert not act.create and w.status["attempts"] == 1 and list(w.rayjobs) == ["bank-assistant-a1"]


def test_happy_path_to_succeeded_with_export_artifacts_and_handoff():
    w = World()
    w.run(); w.run()
    w.ray("bank-assistant-a1", jobDeploymentStatus="Initializing")
    w.run()
    assert w.status["phase"] == "Pending"
    w.ray("bank-assistant-a1", jobDeploymentStatus="Running", jobStatus="RUNNING")
    w.run()
    assert w.status["phase"] == "Training" and w.cond("Progressing")["reason"] == "Training"
    w.report(evalLoss=1.21, trainLoss=1.05)
    w.ray("bank-assistant-a1", jobDeploymentStatus="Complete", jobStatus="SUCCEEDED")
    w.step()
    assert w.status["phase"] == "Evaluating" and w.cond("Trained")["status"] == "True"
    w.run()
    assert w.status["phase"] == "Exporting" and w.export_job["metadata"]["name"] == "bank-assistant-export"
    assert w.cond("Evaluated")["status"] == "True" and "1.21" in w.cond("Evaluated")["message"]
    w.export_job["status"] = {"conditions": [{"type": "Complete", "status": "True"}],
                              "completionTime": "2026-01-01T12:00:00Z"}
    act = w.step()  # completed, but the exporter has not reported its version yet
    assert w.status["phase"] == "Exporting" and act.requeue_after == SETTINGS.requeue_seconds
    w.status.setdefault("artifacts", {})["modelVersion"] = 3  # what the exporter patches
    act = w.step()
    assert w.status["phase"] == "Succeeded" and w.status["completionTime"]
    assert w.status["artifacts"]["modelVersion"] == 3
    assert w.status["artifacts"]["tritonRepository"] == "pvc://models/bank-assistant/triton"
    assert w.cond("Succeeded")["status"] == "True" and w.cond("Exported")["status"] == "True"
    assert act.handoff["name"] == "bank-assistant" and act.handoff["annotations"][MODEL_VERSION_ANNOTATION] == "3"
    reasons = [e.reason for e in w.events]
    assert reasons == ["Accepted", "RayJobCreated", "Training", "Evaluating", "GatePassed", "Exporting", "Succeeded"]
    # terminal is terminal: nothing is ever created again
    w.rayjobs.clear(); w.export_job = None
    act = w.step()
    assert not act.create and w.status["phase"] == "Succeeded"


def test_failed_attempt_retries_once_then_fails_with_backoff_limit_exceeded():
    w = World(backoffLimit=1)
    w.run(); w.run()
    w.ray("bank-assistant-a1", jobDeploymentStatus="Failed", jobStatus="FAILED", reason="AppFailed",
          message="CUDA out of memory")
    act = w.step()
    assert [o["metadata"]["name"] for o in act.create if o["kind"] == "RayJob"] == ["bank-assistant-a2"]
    assert w.status["attempts"] == 2 and w.status["rayJobName"] == "bank-assistant-a2"
    assert any(e.reason == "Retrying" and "CUDA out of memory" in e.message for e in w.events)
    w.ray("bank-assistant-a2", jobDeploymentStatus="Failed", jobStatus="FAILED", message="CUDA out of memory")
    act = w.step()
    assert not act.create
    assert w.status["phase"] == "Failed" and w.status["reason"] == "BackoffLimitExceeded"
    assert len(w.rayjobs) == 2


def test_backoff_limit_zero_fails_with_training_failed():
    w = World(backoffLimit=0)
    w.run(); w.run()
    w.ray("bank-assistant-a1", jobDeploymentStatus="Failed", jobStatus="FAILED", message="bad data")
    w.step()
    assert w.status["reason"] == "TrainingFailed" and "bad data" in w.status["message"]


def test_evaluation_gate_failure_reports_the_measured_value():
    w = World()
    w.run(); w.run()
    w.report(evalLoss=2.3456)
    w.ray("bank-assistant-a1", jobDeploymentStatus="Complete", jobStatus="SUCCEEDED")
    w.run()
    assert w.status["phase"] == "Failed" and w.status["reason"] == "EvaluationGateFailed"
    assert "2.346" in w.status["message"] and "1.5" in w.status["message"]
    assert w.export_job is None and w.cond("Evaluated")["status"] == "False"


def test_missing_gate_metric_fails_the_gate():
    w = World()
    w.run(); w.run()
    w.ray("bank-assistant-a1", jobStatus="SUCCEEDED", jobDeploymentStatus="Complete")
    w.run()
    assert w.status["reason"] == "EvaluationGateFailed" and "not reported" in w.status["message"]


def test_queued_until_kueue_unsuspends():
    w = World(queueName="team-a-gpus")
    w.run(); w.run()
    assert w.rayjobs["bank-assistant-a1"]["spec"]["suspend"] is True
    assert w.status["phase"] == "Queued" and w.cond("Queued")["status"] == "True"
    w.run()
    assert w.status["phase"] == "Queued"
    w.rayjobs["bank-assistant-a1"]["spec"]["suspend"] = False  # Kueue admitted it
    w.ray("bank-assistant-a1", jobDeploymentStatus="Running", jobStatus="RUNNING")
    w.run()
    assert w.status["phase"] == "Training" and w.cond("Queued")["status"] == "False"


def test_user_suspend_and_resume():
    w = World()
    w.training()
    w.body["spec"]["suspend"] = True
    act = w.step()
    assert act.patch == [("ray.io/v1", "RayJob", "bank-assistant-a1", {"spec": {"suspend": True}})]
    assert w.status["phase"] == "Suspended" and w.cond("Suspended")["status"] == "True"
    w.ray("bank-assistant-a1", jobDeploymentStatus="Suspended")
    w.body["spec"]["suspend"] = False
    act = w.step()
    assert act.patch == [("ray.io/v1", "RayJob", "bank-assistant-a1", {"spec": {"suspend": False}})]
    assert w.status["phase"] == "Pending" and w.cond("Suspended")["status"] == "False"


def test_suspended_before_start_creates_nothing():
    w = World(suspend=True)
    w.run(); w.run()
    assert not w.rayjobs and w.status["phase"] == "Suspended"


def test_deadline_stops_the_running_rayjob():
    w = World(activeDeadlineSeconds=600)
    w.training()
    w.now = T0 + timedelta(seconds=601)
    act = w.step()
    assert act.delete == [("ray.io/v1", "RayJob", "bank-assistant-a1")]
    assert w.status["phase"] == "Failed" and w.status["reason"] == "DeadlineExceeded"


def test_kuberay_deadline_maps_to_deadline_exceeded_without_retry():
    w = World(backoffLimit=3)
    w.run(); w.run()
    w.ray("bank-assistant-a1", jobDeploymentStatus="Failed", reason="DeadlineExceeded",
          message="RayJob has passed the activeDeadlineSeconds")
    act = w.step()
    assert not act.create and w.status["reason"] == "DeadlineExceeded"


def test_ttl_deletes_children_but_never_the_job():
    w = World(ttlSecondsAfterFinished=300)
    w.run(); w.run()
    w.report(evalLoss=9.0)
    w.ray("bank-assistant-a1", jobStatus="SUCCEEDED", jobDeploymentStatus="Complete")
    w.run()
    assert w.status["phase"] == "Failed"
    w.now = T0 + timedelta(seconds=100)
    act = w.step()
    assert not act.delete_children and act.requeue_after == pytest.approx(200)
    w.now = T0 + timedelta(seconds=301)
    act = w.step()
    assert act.delete_children and not w.rayjobs and w.status["phase"] == "Failed"
    assert not w.step().delete_children  # nothing left: nothing to do


def test_export_failure_and_export_disabled():
    w = World()
    w.trained_and_passed_the_gate()
    w.export_job["status"] = {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                              "message": "Job has reached the specified backoff limit"}]}
    w.step()
    assert w.status["reason"] == "ExportFailed" and "backoff limit" in w.status["message"]

    w = World(export={"onnx": {"enabled": False}})
    w.trained_and_passed_the_gate()
    assert w.status["phase"] == "Succeeded" and w.export_job is None


def test_parity_gate_exit_code_fails_the_export_job_at_once_and_reads_as_parity_check_failed():
    from tuneline_workloads import contract

    w = World()
    w.trained_and_passed_the_gate()
    rule = w.export_job["spec"]["podFailurePolicy"]["rules"][0]
    assert rule["action"] == "FailJob" and rule["onExitCodes"]["values"] == [contract.EXPORT_EXIT_PARITY_FAILED]
    w.export_job["status"] = {"conditions": [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy",
                                              "message": "Container export for pod x failed with exit code "
                                                         f"{contract.EXPORT_EXIT_PARITY_FAILED} matching FailJob "
                                                         "rule at index 0"}]}
    w.step()
    assert w.status["phase"] == "Failed" and w.status["reason"] == "ParityCheckFailed"
    assert "parity gate" in w.status["message"] and "kubectl logs job/bank-assistant-export" in w.status["message"]


def test_export_that_never_reports_its_version_fails_after_the_grace_period():
    w = World()
    w.trained_and_passed_the_gate()
    w.export_job["status"] = {"conditions": [{"type": "Complete", "status": "True"}],
                              "completionTime": "2026-01-01T12:00:00Z"}
    w.now = T0 + timedelta(seconds=SETTINGS.export_report_grace_seconds + 1)
    w.step()
    assert w.status["reason"] == "ExportFailed" and "modelVersion" in w.status["message"]


def test_file_output_is_rejected_naming_the_field():
    w = World(output={"uri": "file:///tmp/out"})
    w.step()
    assert w.status["phase"] == "Failed" and w.status["reason"] == "InvalidSpec"
    assert w.status["message"].startswith("spec.output.uri")


@pytest.mark.parametrize("spec, field", [
    ({"output": {"uri": "s3://team-a-models/bank"}}, "spec.output.uri"),
    ({"dataset": {"train": {"uri": "s3://team-a-data/train.jsonl"}}}, "spec.dataset.train.uri"),
])
def test_s3_data_or_output_is_rejected_naming_the_field(spec, field):
    """Nothing syncs a bucket into the training and export pods: an s3:// job would train on an
    empty directory and export nothing. It fails at once, saying what to use instead."""
    w = World(**spec)
    w.step()
    assert w.status["phase"] == "Failed" and w.status["reason"] == "InvalidSpec"
    assert w.status["message"].startswith(f"{field}: s3:// is not synced") and "pvc://" in w.status["message"]
    assert not w.rayjobs


def test_suspended_before_start_then_resumed_says_so_in_its_condition():
    """It trained with Suspended=True and the message that no RayJob would be created."""
    w = World(suspend=True)
    w.run(); w.run()
    w.body["spec"]["suspend"] = False
    w.run()
    assert w.rayjobs and w.cond("Suspended")["status"] == "False" and w.cond("Suspended")["reason"] == "Resumed"


def test_a_retry_made_while_the_user_suspends_starts_no_ray_cluster():
    w = World(backoffLimit=2)
    w.training()
    w.body["spec"]["suspend"] = True
    w.ray("bank-assistant-a1", jobDeploymentStatus="Failed", jobStatus="FAILED", message="NCCL timeout")
    w.step()
    assert w.rayjobs["bank-assistant-a2"]["spec"]["suspend"] is True


def test_a_failed_job_is_neither_suspended_nor_queued():
    w = World(backoffLimit=0)
    w.training()
    w.body["spec"]["suspend"] = True
    w.step()
    assert w.cond("Suspended")["status"] == "True"
    w.ray("bank-assistant-a1", jobDeploymentStatus="Failed", jobStatus="FAILED", message="OOM")
    w.step()
    assert w.status["phase"] == "Failed" and w.cond("Suspended")["status"] == "False"


def test_the_deadline_clock_waits_while_queued_and_starts_at_admission():
    """A job that waited for Kueue longer than its deadline failed without ever running."""
    w = World(queueName="team-a-gpus", activeDeadlineSeconds=3600)
    w.run(); w.run()
    w.now = T0 + timedelta(hours=2)
    w.run()
    assert w.status["phase"] == "Queued"
    w.rayjobs["bank-assistant-a1"]["spec"]["suspend"] = False   # admitted after two hours
    w.ray("bank-assistant-a1", jobDeploymentStatus="Running", jobStatus="RUNNING")
    w.run()
    w.now = T0 + timedelta(hours=2, minutes=50)
    w.run()
    assert w.status["phase"] == "Training"
    w.now = T0 + timedelta(hours=3, seconds=1)
    w.run()
    assert w.status["reason"] == "DeadlineExceeded"


def test_work_finished_before_a_late_look_is_not_failed_for_the_deadline():
    """The export finished in time; the operator's next look (its timer) came after the deadline."""
    w = World(activeDeadlineSeconds=3600)
    w.trained_and_passed_the_gate()
    assert w.status["phase"] == "Exporting"
    w.export_job["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    w.status.setdefault("artifacts", {})["modelVersion"] = 1
    w.now = T0 + timedelta(seconds=3605)
    act = w.step()
    assert w.status["phase"] == "Succeeded" and act.handoff is not None

    w = World(activeDeadlineSeconds=3600, backoffLimit=0)   # the same for a training seen finished late
    w.run(); w.run()
    w.report(evalLoss=1.0)
    w.ray("bank-assistant-a1", jobStatus="SUCCEEDED")
    w.now = T0 + timedelta(seconds=3601)
    w.run()
    assert w.status["phase"] == "Exporting"


def test_a_queued_jobs_export_waits_for_kueue_too():
    """The export Job (a GPU pod for TensorRT) ran outside the LocalQueue's quota: no queue label,
    and the controller unsuspended it. Now it is queued like the RayJob, and Kueue starts it; the
    deadline clock waits meanwhile, as it does for the RayJob."""
    w = World(queueName="team-a-gpus", activeDeadlineSeconds=3600)
    w.run(); w.run()
    w.rayjobs["bank-assistant-a1"]["spec"]["suspend"] = False   # Kueue admitted the training
    w.ray("bank-assistant-a1", jobDeploymentStatus="Running", jobStatus="RUNNING")
    w.run()
    w.report(evalLoss=1.0)
    w.ray("bank-assistant-a1", jobStatus="SUCCEEDED")
    w.run()
    export = w.export_job
    assert export["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a-gpus"
    assert export["spec"]["suspend"] is True
    w.now = T0 + timedelta(hours=2)          # waiting for admission longer than the deadline
    act = w.step()
    assert act.patch == [] and w.export_job["spec"]["suspend"] is True
    assert w.status["phase"] == "Exporting" and "waiting for Kueue to admit export Job" in w.status["message"]
    w.export_job["spec"]["suspend"] = False  # admitted
    w.export_job["status"] = {"active": 1}
    w.now = T0 + timedelta(hours=2, minutes=30)
    w.run()
    assert w.status["phase"] == "Exporting"   # 2.5 h after the deadline's start, but 30 min of it active
    w.body["spec"]["suspend"] = True         # the user may still suspend it
    act = w.step()
    assert act.patch == [("batch/v1", "Job", "bank-assistant-export", {"spec": {"suspend": True}})]
