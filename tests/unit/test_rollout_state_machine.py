"""The canary state machine (tuneline.controllers.rollout), step by step, with a fake clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from serving_cases import spec
from tuneline.builders.serving import ServedModel
from tuneline.controllers.rollout import (CanaryMetrics, Observed, RevisionState, model_uri,
                                          next_rollout_action)

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)
REPO = "pvc://models/bank/triton"


def model(v):
    return ServedModel("bank", REPO, v)


GOOD = CanaryMetrics(requests=100, errors=0, p99_ms=120)
BAD_ERRORS = CanaryMetrics(requests=100, errors=7, p99_ms=120)
SLOW = CanaryMetrics(requests=100, errors=0, p99_ms=2500)


def cond(status, type_):
    return next(c for c in status["conditions"] if c["type"] == type_)


class World:
    """The status the controller would store, and Deployments that become ready when asked."""

    def __init__(self, sp=None, version=3):
        self.spec = sp or spec()
        self.status = {}
        self.target = model(version)
        self.deployments: dict[int, RevisionState] = {}
        self.now = T0
        self.events = []

    def run(self, metrics=None, ready=True, replicas=1):
        """Decide once. ``ready``: the pods that exist became ready since the last decision."""
        if ready:
            self.deployments = {r: RevisionState(r, s.model, s.replicas, s.replicas)
                                for r, s in self.deployments.items()}
        obs = Observed(target=self.target, revisions=dict(self.deployments), metrics=metrics, generation=1)
        act = next_rollout_action(self.spec, self.status, obs, self.now)
        self.status = act.status
        self.events += [e.reason for e in act.events]
        wanted = {r for r in (act.stable and act.stable[0], act.canary and act.canary[0]) if r}
        self.deployments = {r: s for r, s in self.deployments.items() if r in wanted}
        for rev, m in filter(None, (act.stable, act.canary)):
            if rev not in self.deployments:
                self.deployments[rev] = RevisionState(rev, m, replicas, 0)
        return act

    def tick(self, seconds):
        self.now += timedelta(seconds=seconds)


def deployed(version=3, sp=None):
    w = World(sp, version)
    w.run()
    w.run()  # pods ready
    return w


def test_first_revision_is_deployed_directly_and_becomes_available():
    w = World()
    act = w.run()
    assert act.name == "Deploy" and act.stable == (1, model(3)) and act.canary is None
    assert w.status["revision"] == 1 and w.status["modelVersion"] == 3
    assert cond(w.status, "Available")["status"] == "False"
    assert cond(w.status, "Progressing")["status"] == "True"
    assert all(c["observedGeneration"] == 1 for c in w.status["conditions"])
    w.run()
    assert cond(w.status, "Available")["status"] == "True" and w.status["phase"] == "Available"
    assert cond(w.status, "Progressing")["reason"] == "RolloutComplete"
    assert w.status["history"] == [{"revision": 1, "modelVersion": 3, "uri": f"{REPO}/bank",
                                    "deployedAt": "2025-01-01T12:00:00Z", "outcome": "Active",
                                    "reason": "first revision"}]
    assert w.events == ["Deploying"]


def test_no_model_yet_waits_pending():
    w = World()
    w.target = None
    act = next_rollout_action(w.spec, {}, Observed(target=None, target_problem=None, generation=1), T0)
    assert act.name == "AwaitModel" and act.stable is None
    assert act.status["phase"] == "Pending" and cond(act.status, "Available")["reason"] == "WaitingForModel"


def test_healthy_canary_is_promoted_step_by_step():
    w = deployed()
    w.target = model(4)
    act = w.run(ready=False)
    assert act.name == "StartCanary" and act.canary == (2, model(4)) and act.weight == 0
    assert w.status["canary"] == {"revision": 2, "weight": 0, "step": 0, "stepStarted": "2025-01-01T12:00:00Z"}
    # not ready yet: still 0 %
    w.tick(5)
    act = w.run(ready=False)
    assert act.weight == 0 and cond(w.status, "Progressing")["reason"] == "CanaryStarting"
    act = w.run()  # the canary pods became ready
    assert act.name == "Step" and act.weight == 10 and w.status["canary"]["step"] == 1
    # inside the pause: stays at 10 % even with good numbers
    w.tick(100)
    act = w.run(GOOD)
    assert act.weight == 10 and cond(w.status, "Progressing")["reason"] == "CanaryStepPaused"
    w.tick(200)
    act = w.run(GOOD)
    assert act.name == "Step" and act.weight == 50 and w.status["canary"]["step"] == 2
    w.tick(300)
    act = w.run(GOOD)
    assert act.name == "Promote" and act.stable == (2, model(4)) and act.canary is None and act.promoted_from == 1
    assert w.status["revision"] == 2 and w.status["modelVersion"] == 4 and "canary" not in w.status
    outcomes = [(r["revision"], r["outcome"]) for r in w.status["history"]]
    assert outcomes == [(1, "Superseded"), (2, "Promoted")]
    assert "error rate 0.00%" in w.status["history"][-1]["reason"]
    assert w.events == ["Deploying", "CanaryStarted", "CanaryStep", "CanaryStep", "Promoted"]
    w.run()
    assert w.status["phase"] == "Available" and cond(w.status, "Degraded")["status"] == "False"
    assert set(w.deployments) == {2}


def test_high_error_rate_rolls_back_at_once_with_the_numbers():
    w = deployed()
    w.target = model(4)
    w.run(), w.run(), w.run()
    assert w.status["canary"]["weight"] == 10
    w.tick(20)  # well inside the pause: a breach does not wait
    act = w.run(BAD_ERRORS)
    assert act.name == "Rollback" and act.canary is None and act.stable == (1, model(3))
    rec = w.status["history"][-1]
    assert rec["revision"] == 2 and rec["outcome"] == "RolledBack"
    assert "error rate 7.00% > 1.00%" in rec["reason"] and "7 of 100" in rec["reason"]
    assert cond(w.status, "Degraded")["status"] == "True" and cond(w.status, "Degraded")["reason"] == "CanaryRolledBack"
    assert cond(w.status, "Available")["status"] == "True"
    assert w.status["phase"] == "Degraded" and w.status["revision"] == 1
    assert w.events[-1] == "RolledBack"
    # the same model is not tried again
    w.tick(60)
    act = w.run(GOOD)
    assert act.name == "Hold" and act.canary is None and w.status["phase"] == "Degraded"
    assert set(w.deployments) == {1}
    # a new version is
    w.target = model(5)
    act = w.run()
    assert act.name == "StartCanary" and act.canary[0] == 3
    assert cond(w.status, "Degraded")["status"] == "False"


def test_high_p99_latency_rolls_back():
    w = deployed()
    w.target = model(4)
    w.run(), w.run(), w.run()
    act = w.run(SLOW)
    assert act.name == "Rollback" and "p99 latency 2500 ms > 800 ms" in w.status["history"][-1]["reason"]


def test_too_few_requests_neither_judges_nor_promotes():
    w = deployed()
    w.target = model(4)
    w.run(), w.run(), w.run()
    w.tick(400)
    few = CanaryMetrics(requests=5, errors=5, p99_ms=5000)  # terrible, but 5 < minRequests (20)
    act = w.run(few)
    assert act.name == "Steady" and act.weight == 10
    assert cond(w.status, "Progressing")["reason"] == "AwaitingTraffic"
    act = w.run(None)
    assert act.weight == 10
    act = w.run(GOOD)
    assert act.weight == 50


def test_canary_that_never_gets_ready_is_rolled_back_after_the_timeout():
    w = deployed()
    w.target = model(4)
    w.run(ready=False)
    w.tick(300)
    assert w.run(ready=False).name == "Steady"
    w.tick(301)
    act = w.run(ready=False)
    assert act.name == "Rollback" and "CanaryNotReady" in w.status["history"][-1]["reason"]


def test_pinning_an_older_version_is_a_fast_rollback_without_steps():
    w = deployed()
    w.target = model(4)
    w.run(), w.run(), w.run()
    w.tick(300), w.run(GOOD)
    w.tick(300), w.run(GOOD)
    assert w.status["revision"] == 2
    w.target = model(3)  # spec.model.version: 3
    act = w.run(ready=False)
    assert act.name == "StartCanary" and act.canary == (3, model(3))
    assert w.events[-1] == "RollbackStarted"
    assert cond(w.status, "Progressing")["reason"] == "RollingBackToKnownGood"
    act = w.run()  # its pods became ready
    assert act.name == "Promote" and act.stable == (3, model(3)) and w.status["modelVersion"] == 3
    assert w.status["history"][-1]["outcome"] == "Active" and "known good" in w.status["history"][-1]["reason"]
    assert w.events[-1] == "RolledBackToRevision"


def test_recreate_strategy_replaces_at_once():
    sp = spec(rollout={"strategy": "recreate"})
    w = deployed(sp=sp)
    w.target = model(4)
    act = w.run()
    assert act.name == "Recreate" and act.stable == (2, model(4)) and act.canary is None
    assert [r["outcome"] for r in w.status["history"]] == ["Superseded", "Active"]


def test_a_newer_version_during_a_canary_supersedes_it():
    w = deployed()
    w.target = model(4)
    w.run(), w.run(), w.run()
    w.target = model(5)
    act = w.run()
    assert act.canary == (3, model(5)) and act.weight == 0
    assert w.status["history"][-1]["revision"] == 2 and w.status["history"][-1]["outcome"] == "Aborted"
    assert "CanaryAborted" in w.events


def test_going_back_to_the_stable_model_stops_the_canary():
    w = deployed()
    w.target = model(4)
    w.run(), w.run(), w.run()
    w.target = model(3)
    act = w.run()
    assert act.canary is None and act.stable == (1, model(3)) and "canary" not in w.status


def test_history_is_trimmed_to_the_limit_keeping_the_stable():
    w = deployed(sp=spec(rollout={"strategy": "recreate", "revisionHistoryLimit": 2}))
    for v in (4, 5, 6):
        w.target = model(v)
        w.run(), w.run()
    assert [r["revision"] for r in w.status["history"]] == [3, 4]
    assert w.status["revision"] == 4


def test_same_inputs_same_decision_a_restarted_operator_continues():
    w = deployed()
    w.target = model(4)
    w.run(), w.run(), w.run()
    w.tick(100)
    obs = Observed(target=w.target, revisions=dict(w.deployments), metrics=GOOD, generation=1)
    a = next_rollout_action(w.spec, w.status, obs, w.now)
    b = next_rollout_action(w.spec, w.status, obs, w.now)
    assert a.status == b.status and a.weight == b.weight == 10 and a.events == b.events == []


def test_model_uri_round_trips_through_history():
    from tuneline.controllers.rollout import model_from_record
    assert model_from_record({"uri": model_uri(model(7)), "modelVersion": 7}) == model(7)
    assert model_from_record({"uri": "pvc://claim", "modelVersion": 1}) is None


@pytest.mark.parametrize("status", [None, {}])
def test_first_visit_writes_every_condition(status):
    act = next_rollout_action(spec(), status, Observed(target=None, generation=2), T0)
    assert {c["type"] for c in act.status["conditions"]} == {"Available", "Progressing", "Degraded"}


def test_a_canary_stopped_before_it_was_judged_is_not_known_good():
    """An aborted canary was recorded Superseded, which counted as known good: asked for again, it
    replaced the stable revision once ready, with no step and no analysis."""
    w = deployed()
    w.target = model(4)
    w.run(), w.run()
    assert w.status["canary"]["step"] == 1
    w.target = model(3)   # the spec went back before v4 was judged
    w.run()
    assert w.status["history"][-1]["outcome"] == "Aborted"
    w.target = model(4)
    assert w.run(ready=False).name == "StartCanary" and w.events[-1] == "CanaryStarted"
    act = w.run()
    assert act.name == "Step" and act.weight == 10 and act.stable[0] == 1


def test_a_canary_whose_pods_stop_being_ready_during_a_step_is_rolled_back():
    """Readiness was checked only before step 1: a canary that crash-looped at 10% answered nothing,
    so its metrics never failed it, and it stayed at 10% (of traffic sent nowhere) for good."""
    w = deployed()
    w.target = model(4)
    w.run(), w.run()
    rev = w.status["canary"]["revision"]

    def pods_ready(n):
        w.deployments[rev] = RevisionState(rev, model(4), 1, n)
    pods_ready(0)
    w.tick(300)
    assert w.run(ready=False).name == "Steady" and w.status["canary"]["notReadySince"]
    pods_ready(1)   # a restart that recovers resets the clock
    w.tick(300)
    w.run(ready=False)
    assert w.status["canary"]["notReadySince"] is None
    pods_ready(0)
    w.tick(1)
    w.run(ready=False)
    w.tick(599)
    assert w.run(ready=False).name == "Steady"
    w.tick(2)
    act = w.run(ready=False)
    assert act.name == "Rollback" and "CanaryNotReady" in w.status["history"][-1]["reason"]
    assert "had no pod ready for 601 s" in w.status["history"][-1]["reason"]


# a last step of 20%: one canary replica beside four stable ones
SMALL_STEPS = {"steps": [{"weight": 10, "pauseSeconds": 300}, {"weight": 20, "pauseSeconds": 300}]}


def _a_canary_that_passed_beside_four_stable_pods():
    w = deployed(sp=spec(replicas=4, rollout=SMALL_STEPS))
    w.deployments[1] = RevisionState(1, model(3), 4, 4)
    w.target = model(4)
    w.run(ready=False), w.run()
    w.tick(300), w.run(GOOD)
    w.tick(300)
    return w, w.run(GOOD)


def test_a_canary_replaces_the_stable_only_once_scaled_to_the_stable_size():
    """A promotion retired the old stable in the same pass, while the new one ran only its canary-sized
    replicas (1 after a fast rollback, half at a 50% last step): all traffic on a few pods."""
    w, act = _a_canary_that_passed_beside_four_stable_pods()
    assert act.name == "ScaleUp" and act.canary_full_size and act.stable[0] == 1 and act.promoted_from is None
    assert w.events[-1] == "CanaryScalingUp" and cond(w.status, "Progressing")["reason"] == "CanaryScalingUp"
    w.deployments[2] = RevisionState(2, model(4), 4, 2)   # the operator scaled it; half its pods are ready
    act = w.run(GOOD, ready=False)
    assert act.name == "ScaleUp" and w.events.count("CanaryScalingUp") == 1
    w.deployments[2] = RevisionState(2, model(4), 4, 4)
    act = w.run(GOOD, ready=False)
    assert act.name == "Promote" and act.stable[0] == 2 and act.promoted_from == 1


class _RecordingKube:
    """The calls the controller makes (a stand-in for the API server: the real one is in
    tests/integration); an applied Deployment keeps the replicas it has."""

    def __init__(self, replicas):
        self.replicas, self.scaled, self.deleted = replicas, {}, []

    def request(self, method, url, body=None, content_type=None, query=None):
        import json
        obj = json.loads(body)
        if obj["kind"] == "Deployment":
            return {"spec": {"replicas": self.replicas.get(obj["metadata"]["name"], 1)}}
        return obj

    def patch(self, api_version, kind, namespace, name, patch, subresource=None):
        if subresource == "scale":
            self.scaled[name] = patch["spec"]["replicas"]

    def delete(self, api_version, kind, namespace, name, **kw):
        self.deleted.append((kind, name))


def test_the_controller_scales_a_canary_that_is_to_replace_the_stable_to_the_stable_size():
    import serving_cases
    from tuneline.controllers import modeldeployment as controller

    w, act = _a_canary_that_passed_beside_four_stable_pods()
    body = serving_cases.raw(replicas=4, rollout=SMALL_STEPS)
    body["metadata"].update(namespace="team-a", resourceVersion="1")
    body["status"] = w.status
    k = _RecordingKube({"bank-assistant-r1": 4, "bank-assistant-r2": 2})
    live = {r: {"spec": {"replicas": n}, "status": {"readyReplicas": n}} for r, n in ((1, 4), (2, 2))}
    controller.apply(k, serving_cases.md(replicas=4, rollout=SMALL_STEPS), body, act, live, serving_cases.SETTINGS)
    assert k.scaled == {"bank-assistant-r2": 4} and not any(kind == "Deployment" for kind, _ in k.deleted)


def test_a_revision_number_is_never_given_twice_even_once_trimmed_from_history():
    """With revisionHistoryLimit 1 a rolled-back canary's record was trimmed once the hold on it
    ended, and the next canary got its number again: a second Deployment <name>-r2 (the first may
    still be terminating) and a history where revision 2 meant two models."""
    w = deployed(sp=spec(rollout={"revisionHistoryLimit": 1, "steps": [{"weight": 10, "pauseSeconds": 60}]}))
    w.target = model(4)
    w.run(), w.run(), w.run()
    assert w.status["canary"]["revision"] == 2
    w.tick(20)
    assert w.run(BAD_ERRORS).name == "Rollback"
    w.target = model(3)          # back to the stable model: the hold on revision 2 ends
    w.run()
    assert [r["revision"] for r in w.status["history"]] == [1]
    w.target = model(5)
    act = w.run()
    assert act.name == "StartCanary" and act.canary[0] == 3
