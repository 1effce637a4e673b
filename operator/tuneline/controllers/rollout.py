"""The rollout state machine of a ModelDeployment: pure, no I/O, unit tested.

:func:`next_rollout_action` (spec, stored status, what was observed, now) → :class:`RolloutAction`:
which revisions should run (stable, canary), the canary's traffic weight, the new status and the
Events to post. The controller applies it; running it again on the same inputs gives the same
answer, so a restarted operator continues a rollout from the stored status.

Revisions. Every model (repository URI + model name + version) that is rolled out gets the next
revision number. ``status.revision`` is the stable one; ``status.canary`` the one being tried.
``status.history`` keeps one record per decided revision (oldest first, at most
``spec.rollout.revisionHistoryLimit``, the stable one always kept):

* ``Active``     serving, deployed directly (first revision, ``recreate``, a rollback to a known-good model)
* ``Promoted``   serving, promoted by a canary
* ``Superseded`` served before, replaced by a later revision (or dropped before promotion)
* ``RolledBack`` its canary failed (reason with the numbers); it is not retried until a
  different model is asked for

Canary (``spec.rollout.strategy: canary``), for a model not served before:
  step 0, weight 0   the canary Deployment starts; it must have its pods ready within
                     ``Settings.canary_ready_timeout_seconds`` or it is rolled back
  step i, weight wᵢ  ``spec.rollout.steps[i-1]``: traffic at wᵢ %; the canary's error rate and p99
                     latency since the step started are checked on every pass (a breach rolls back
                     at once); after ``pauseSeconds`` with at least ``analysis.minRequests``
                     requests, the next step, or promotion after the last
A model that was served before (``spec.model.version`` set back to an older revision's version)
is a fast rollback: as soon as its pods are ready it replaces the stable one, no steps.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from tuneline import status as st
from tuneline.api import DeploymentPhase, ModelDeploymentSpec
from tuneline.builders.serving import ServedModel, stable_replicas

# outcomes of history records
ACTIVE, PROMOTED, SUPERSEDED, ROLLED_BACK = "Active", "Promoted", "Superseded", "RolledBack"
ABORTED = "Aborted"   # a canary stopped before it was judged: never known good
SERVING = (ACTIVE, PROMOTED)
KNOWN_GOOD = (ACTIVE, PROMOTED, SUPERSEDED)   # served as the stable revision

# condition reasons
R_WAITING_FOR_MODEL = "WaitingForModel"
R_MODEL_NOT_FOUND = "ModelNotFound"
R_AVAILABLE = "MinimumReplicasAvailable"
R_SCALED_TO_ZERO = "ScaledToZero"
R_NO_REPLICAS = "NoReplicasReady"
R_ROLLING = "RolloutInProgress"
R_COMPLETE = "RolloutComplete"
R_CANARY_STARTING = "CanaryStarting"
R_CANARY_PAUSED = "CanaryStepPaused"
R_AWAITING_TRAFFIC = "AwaitingTraffic"
R_FAST_ROLLBACK = "RollingBackToKnownGood"
R_ROLLED_BACK = "CanaryRolledBack"
R_AS_EXPECTED = "AsExpected"
R_ANALYSIS_FAILED = "AnalysisFailed"
R_CANARY_NOT_READY = "CanaryNotReady"
R_SCALING_UP = "CanaryScalingUp"


@dataclass(frozen=True)
class CanaryMetrics:
    """What the canary's gateways answered since the current step started."""

    requests: float
    errors: float                 # 5xx answers
    p99_ms: float | None = None   # None: no latency data

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests > 0 else 0.0


@dataclass(frozen=True)
class RevisionState:
    """One revision's Deployment as observed."""

    revision: int
    model: ServedModel | None
    replicas: int = 0
    ready: int = 0


@dataclass
class Observed:
    target: ServedModel | None                       # the model the spec (or a hand-off) asks for
    revisions: dict[int, RevisionState] = field(default_factory=dict)
    metrics: CanaryMetrics | None = None             # of the canary, for the current step
    generation: int | None = None
    target_problem: str | None = None                # why there is no target (message for the user)
    canary_ready_timeout_seconds: float = 600.0


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


@dataclass
class RolloutAction:
    name: str
    stable: tuple[int, ServedModel] | None
    canary: tuple[int, ServedModel] | None
    weight: int                                      # percent of traffic on the canary
    status: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    promoted_from: int | None = None                 # the revision a promotion replaced
    canary_full_size: bool = False                   # scaled to the stable's replicas before it replaces it


# --- helpers -----------------------------------------------------------------------------------
def model_uri(model: ServedModel) -> str:
    """The model's directory in its repository: what history records keep as ``uri``."""
    return f"{model.repository.rstrip('/')}/{model.name}"


def model_from_record(record: dict[str, Any]) -> ServedModel | None:
    uri = record.get("uri")
    if not uri or "/" not in uri.split("://", 1)[-1]:
        return None
    repository, name = uri.rstrip("/").rsplit("/", 1)
    return ServedModel(name=name, repository=repository, version=record.get("modelVersion"))


def _key(model: ServedModel | None) -> tuple[str, int | None] | None:
    return None if model is None else (model_uri(model), model.version)


def _record_key(record: dict[str, Any]) -> tuple[str | None, int | None]:
    return (record.get("uri"), record.get("modelVersion"))


def describe(model: ServedModel) -> str:
    v = f"version {model.version}" if model.version is not None else "newest version"
    return f"{model.name} {v}"


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None


def next_revision(status: dict[str, Any]) -> int:
    """One above every revision number ever given: those in the history, the live ones, and the
    high-water mark (a number trimmed from the history is never given again)."""
    seen = [r.get("revision") or 0 for r in status.get("history") or []]
    seen += [status.get("revision") or 0, ((status.get("canary") or {}).get("revision")) or 0,
             status.get("lastRevision") or 0]
    return max(seen) + 1


def _record(history: list[dict[str, Any]], revision: int | None) -> dict[str, Any] | None:
    return next((r for r in reversed(history) if r.get("revision") == revision), None)


def _latest_for(history: list[dict[str, Any]], key) -> dict[str, Any] | None:
    return next((r for r in reversed(history) if _record_key(r) == key), None)


def trim_history(history: list[dict[str, Any]], limit: int, keep: set[int]) -> list[dict[str, Any]]:
    out = sorted(history, key=lambda r: r.get("revision") or 0)
    while len(out) > limit:
        victim = next((r for r in out if r.get("revision") not in keep), None)
        if victim is None:
            break
        out.remove(victim)
    return out


def _fmt_metrics(m: CanaryMetrics | None) -> str:
    if m is None:
        return "no metrics"
    p99 = f"{m.p99_ms:.0f} ms" if m.p99_ms is not None else "n/a"
    return f"error rate {m.error_rate:.2%} ({m.errors:.0f}/{m.requests:.0f} requests), p99 latency {p99}"


# --- the state machine ---------------------------------------------------------------------------
def next_rollout_action(spec: ModelDeploymentSpec, status: dict[str, Any] | None, observed: Observed,
                        now: datetime) -> RolloutAction:
    s = copy.deepcopy(status or {})
    gen = observed.generation
    st.initial_conditions(s, st.MODELDEPLOYMENT_CONDITIONS, gen)
    history: list[dict[str, Any]] = list(s.get("history") or [])
    s["history"] = history  # one list: next_revision() sees records appended below
    events: list[Event] = []
    target = observed.target
    rollout = spec.rollout
    name = "Steady"
    promoted_from = None

    stable_rev: int | None = s.get("revision")
    stable_model = None
    if stable_rev is not None:
        rec = _record(history, stable_rev)
        stable_model = model_from_record(rec) if rec else None
        if stable_model is None and stable_rev in observed.revisions:
            stable_model = observed.revisions[stable_rev].model

    # --- nothing served yet --------------------------------------------------------------------
    if stable_rev is None or stable_model is None:
        if target is None:
            return _await_model(s, observed, gen)
        rev = next_revision(s)
        history.append({"revision": rev, "modelVersion": target.version, "uri": model_uri(target),
                        "deployedAt": iso(now), "outcome": ACTIVE, "reason": "first revision"})
        s["revision"], stable_rev, stable_model = rev, rev, target
        s.pop("canary", None)
        events.append(Event("Normal", "Deploying", f"revision {rev}: {describe(target)} from {target.repository}"))
        name = "Deploy"

    canary = s.get("canary")
    canary_model: ServedModel | None = None
    if canary:
        obs = observed.revisions.get(canary["revision"])
        canary_model = (obs.model if obs and obs.model else None) or target
    if target is None:
        # the model source is gone for now: keep what runs (and a running canary) as it is
        target = canary_model or stable_model

    # --- a running canary that is no longer wanted ------------------------------------------------
    if canary and _key(canary_model) != _key(target):
        why = ("the spec went back to the stable model" if _key(target) == _key(stable_model)
               else f"{describe(target)} was asked for before it was promoted")
        history.append({"revision": canary["revision"], "modelVersion": canary_model.version,
                        "uri": model_uri(canary_model), "deployedAt": canary.get("stepStarted") or iso(now),
                        "outcome": ABORTED, "reason": f"canary stopped: {why}"})
        events.append(Event("Normal", "CanaryAborted", f"revision {canary['revision']} ({describe(canary_model)}) "
                                                       f"stopped at {canary.get('weight', 0)}%: {why}"))
        s.pop("canary", None)
        canary, canary_model = None, None
        name = "AbortCanary"

    hold_record = None
    # --- a new model asked for ---------------------------------------------------------------------
    if not canary and _key(target) != _key(stable_model):
        prior = _latest_for(history, _key(target))
        if prior is not None and prior.get("outcome") == ROLLED_BACK:
            hold_record = prior
            name = "Hold"
        elif rollout.strategy == "recreate":
            rev = next_revision(s)
            _supersede(history, stable_rev, f"replaced by revision {rev}")
            history.append({"revision": rev, "modelVersion": target.version, "uri": model_uri(target),
                            "deployedAt": iso(now), "outcome": ACTIVE, "reason": "strategy recreate"})
            events.append(Event("Normal", "Deploying", f"revision {rev}: {describe(target)} replaces revision "
                                                       f"{stable_rev} (strategy recreate)"))
            s["revision"], stable_rev, stable_model = rev, rev, target
            name = "Recreate"
        else:
            rev = next_revision(s)
            canary = {"revision": rev, "weight": 0, "step": 0, "stepStarted": iso(now)}
            s["canary"], canary_model = canary, target
            fast = prior is not None and prior.get("outcome") in KNOWN_GOOD
            if fast:
                events.append(Event("Normal", "RollbackStarted",
                                    f"revision {rev}: back to {describe(target)} (served before as revision "
                                    f"{prior['revision']}); it replaces revision {stable_rev} once ready"))
            else:
                events.append(Event("Normal", "CanaryStarted",
                                    f"revision {rev}: {describe(target)} from {target.repository}; "
                                    f"revision {stable_rev} keeps all traffic until its pods are ready"))
            name = "StartCanary"

    # --- step the canary ---------------------------------------------------------------------------
    progress_reason, progress_message = None, None
    if canary:
        rev = canary["revision"]
        step = int(canary.get("step") or 0)
        started = parse_time(canary.get("stepStarted")) or now
        elapsed = (now - started).total_seconds()
        obs = observed.revisions.get(rev)
        ready = obs is not None and obs.ready >= 1 and obs.ready >= obs.replicas
        prior = _latest_for(history, _key(canary_model))
        fast = prior is not None and prior.get("outcome") in KNOWN_GOOD and prior.get("revision") != rev
        analysis = rollout.analysis
        m = observed.metrics if step >= 1 else None
        outcome: tuple[str, str] | None = None   # ("promote" | "rollback", reason)

        if step == 0:
            if not ready:
                if elapsed > observed.canary_ready_timeout_seconds:
                    have = f"{obs.ready}/{obs.replicas}" if obs else "0/0"
                    outcome = ("rollback", f"{R_CANARY_NOT_READY}: revision {rev} had {have} pods ready after "
                                           f"{elapsed:.0f} s (limit {observed.canary_ready_timeout_seconds:.0f} s)")
                else:
                    progress_reason = R_FAST_ROLLBACK if fast else R_CANARY_STARTING
                    progress_message = (f"revision {rev} ({describe(canary_model)}) is starting: "
                                        f"{obs.ready if obs else 0}/{obs.replicas if obs else 0} pods ready")
            elif fast:
                outcome = ("promote", f"rollback to {describe(canary_model)} (known good as revision "
                                      f"{prior['revision']})")
            else:
                first = rollout.steps[0]
                canary.update(step=1, weight=first.weight, stepStarted=iso(now))
                events.append(Event("Normal", "CanaryStep", f"revision {rev}: step 1/{len(rollout.steps)}, "
                                                            f"{first.weight}% of traffic"))
                progress_reason = R_CANARY_PAUSED
                progress_message = f"revision {rev} at {first.weight}% (step 1/{len(rollout.steps)})"
                name = "Step"
        else:
            current = rollout.steps[min(step, len(rollout.steps)) - 1]
            error_breach = m is not None and m.requests > 0 and m.requests >= analysis.min_requests \
                and m.error_rate > analysis.max_error_rate
            latency_breach = m is not None and m.requests > 0 and m.requests >= analysis.min_requests \
                and m.p99_ms is not None and m.p99_ms > analysis.max_p99_latency_ms
            # pods that stop being ready once the canary takes traffic (a crash loop) answer nothing, so
            # its metrics never fail it: a canary with no ready pod for as long as it may take to start
            # is rolled back
            serving = obs is not None and obs.ready >= 1
            down_since = parse_time(canary.get("notReadySince"))
            if serving:
                if down_since is not None:
                    canary["notReadySince"] = None   # null: the status patch removes it
            elif down_since is None:
                canary["notReadySince"], down_since = iso(now), now
            down = 0.0 if serving else (now - down_since).total_seconds()
            if not serving and down > observed.canary_ready_timeout_seconds:
                outcome = ("rollback", f"{R_CANARY_NOT_READY}: revision {rev} at {canary.get('weight')}% (step "
                                       f"{step}/{len(rollout.steps)}) had no pod ready for {down:.0f} s "
                                       f"(limit {observed.canary_ready_timeout_seconds:.0f} s)")
            elif not serving:
                progress_reason = R_CANARY_PAUSED
                progress_message = (f"revision {rev} at {canary.get('weight')}% (step {step}/{len(rollout.steps)}) "
                                    "has no pod ready; rolled back if none is within "
                                    f"{observed.canary_ready_timeout_seconds - down:.0f} s")
            elif error_breach or latency_breach:
                what = []
                if error_breach:
                    what.append(f"error rate {m.error_rate:.2%} > {analysis.max_error_rate:.2%} "
                                f"({m.errors:.0f} of {m.requests:.0f} requests failed)")
                if latency_breach:
                    what.append(f"p99 latency {m.p99_ms:.0f} ms > {analysis.max_p99_latency_ms:.0f} ms")
                outcome = ("rollback", f"{R_ANALYSIS_FAILED}: revision {rev} at {canary.get('weight')}% "
                                       f"(step {step}/{len(rollout.steps)}): {'; '.join(what)}")
            elif elapsed < current.pause_seconds:
                progress_reason = R_CANARY_PAUSED
                progress_message = (f"revision {rev} at {canary.get('weight')}% (step {step}/{len(rollout.steps)}), "
                                    f"{current.pause_seconds - elapsed:.0f} s left in this step; {_fmt_metrics(m)}")
            elif m is None or m.requests < analysis.min_requests or (m.requests == 0 and analysis.min_requests > 0):
                progress_reason = R_AWAITING_TRAFFIC
                progress_message = (f"revision {rev} at {canary.get('weight')}% (step {step}/{len(rollout.steps)}) "
                                    f"waits for {analysis.min_requests} requests to judge it; "
                                    f"{m.requests if m else 0:.0f} so far")
            elif step >= len(rollout.steps):
                outcome = ("promote", f"analysis passed at every step ({len(rollout.steps)}); last step: "
                                      f"{_fmt_metrics(m)}")
            else:
                nxt = rollout.steps[step]
                events.append(Event("Normal", "CanaryStep",
                                    f"revision {rev}: step {step} passed ({_fmt_metrics(m)}); step "
                                    f"{step + 1}/{len(rollout.steps)}, {nxt.weight}% of traffic"))
                canary.update(step=step + 1, weight=nxt.weight, stepStarted=iso(now))
                progress_reason = R_CANARY_PAUSED
                progress_message = f"revision {rev} at {nxt.weight}% (step {step + 1}/{len(rollout.steps)})"
                name = "Step"

        full = stable_replicas(spec)
        if outcome and outcome[0] == "promote" and (obs is None or obs.ready < full):
            # canary-sized until now: the old stable is retired only once this one can carry all the traffic
            progress_reason = R_SCALING_UP
            progress_message = (f"revision {rev} passed ({outcome[1]}); it replaces revision {stable_rev} once "
                                f"scaled to {full} replicas: {obs.ready if obs else 0}/{full} ready")
            if not canary.get("fullSize"):
                events.append(Event("Normal", "CanaryScalingUp", progress_message))
            canary["fullSize"] = True
            outcome, name = None, "ScaleUp"
        if outcome and outcome[0] == "promote":
            _supersede(history, stable_rev, f"replaced by revision {rev}")
            history.append({"revision": rev, "modelVersion": canary_model.version, "uri": model_uri(canary_model),
                            "deployedAt": iso(now), "outcome": ACTIVE if fast else PROMOTED, "reason": outcome[1]})
            events.append(Event("Normal", "RolledBackToRevision" if fast else "Promoted",
                                f"revision {rev} ({describe(canary_model)}) replaces revision {stable_rev}: "
                                f"{outcome[1]}"))
            promoted_from = stable_rev
            s["revision"], stable_rev, stable_model = rev, rev, canary_model
            s.pop("canary", None)
            canary = None
            name = "Promote"
        elif outcome:
            history.append({"revision": rev, "modelVersion": canary_model.version, "uri": model_uri(canary_model),
                            "deployedAt": iso(now), "outcome": ROLLED_BACK, "reason": outcome[1]})
            events.append(Event("Warning", "RolledBack", f"revision {rev} ({describe(canary_model)}) rolled back; "
                                                         f"revision {stable_rev} keeps serving: {outcome[1]}"))
            hold_record = history[-1]
            s.pop("canary", None)
            canary = None
            name = "Rollback"

    # --- bookkeeping --------------------------------------------------------------------------------
    s["revision"] = stable_rev
    s["modelVersion"] = stable_model.version
    if stable_model.version is None:
        s.pop("modelVersion", None)
    keep = {stable_rev, *([canary["revision"]] if canary else [])}
    if hold_record is not None:
        keep.add(hold_record["revision"])
    s["lastRevision"] = next_revision(s) - 1   # before the trim forgets any
    s["history"] = trim_history(history, rollout.revision_history_limit, keep)
    if canary:
        s["canary"] = canary
    _conditions(s, spec, observed, stable_rev, canary, hold_record, progress_reason, progress_message, gen)
    weight = int(canary.get("weight") or 0) if canary else 0
    return RolloutAction(name=name, stable=(stable_rev, stable_model),
                         canary=(canary["revision"], canary_model) if canary else None, weight=weight,
                         status=s, events=events, promoted_from=promoted_from,
                         canary_full_size=bool(canary and canary.get("fullSize")))


def _supersede(history: list[dict[str, Any]], revision: int | None, reason: str) -> None:
    rec = _record(history, revision)
    if rec is not None and rec.get("outcome") in SERVING:
        rec["outcome"] = SUPERSEDED
        rec["reason"] = reason


def _await_model(s: dict[str, Any], observed: Observed, gen: int | None) -> RolloutAction:
    problem = observed.target_problem or "no model version to serve yet"
    s["phase"] = DeploymentPhase.PENDING.value
    st.set_condition(s, st.AVAILABLE, "False", R_WAITING_FOR_MODEL, problem, gen)
    st.set_condition(s, st.PROGRESSING, "True", R_WAITING_FOR_MODEL, problem, gen)
    st.set_condition(s, st.DEGRADED, "False", R_AS_EXPECTED, "", gen)
    return RolloutAction(name="AwaitModel", stable=None, canary=None, weight=0, status=s)


def _conditions(s: dict[str, Any], spec: ModelDeploymentSpec, observed: Observed, stable_rev: int,
                canary: dict[str, Any] | None, hold: dict[str, Any] | None, progress_reason: str | None,
                progress_message: str | None, gen: int | None) -> None:
    obs = observed.revisions.get(stable_rev)
    # measured against the count the operator is about to set, not the Deployment's current one: a
    # new revision's Deployment starts at 1 and is not "rolled out" at 1/1 when 2 are wanted
    ready, replicas = (obs.ready, stable_replicas(spec)) if obs else (0, 0)
    scaled_to_zero = obs is not None and replicas == 0 and spec.autoscaling is not None \
        and spec.autoscaling.scale_to_zero
    if ready >= 1:
        st.set_condition(s, st.AVAILABLE, "True", R_AVAILABLE,
                         f"{ready}/{replicas} pods of revision {stable_rev} ready", gen)
    elif scaled_to_zero:
        st.set_condition(s, st.AVAILABLE, "True", R_SCALED_TO_ZERO,
                         f"revision {stable_rev} is scaled to zero; KEDA starts it on demand", gen)
    else:
        st.set_condition(s, st.AVAILABLE, "False", R_NO_REPLICAS,
                         f"revision {stable_rev} has no ready pod yet ({ready}/{replicas}): the model may still be "
                         f"loading or pods pending; see kubectl describe pods -l tuneline.io/revision={stable_rev}",
                         gen)

    if canary:
        st.set_condition(s, st.PROGRESSING, "True", progress_reason or R_CANARY_PAUSED,
                         progress_message or f"revision {canary['revision']} at {canary.get('weight', 0)}%", gen)
    elif obs is None or (ready < replicas and not scaled_to_zero):
        st.set_condition(s, st.PROGRESSING, "True", R_ROLLING,
                         f"revision {stable_rev}: {ready}/{replicas} pods ready", gen)
    elif hold is not None:
        st.set_condition(s, st.PROGRESSING, "False", R_ROLLED_BACK,
                         f"revision {hold['revision']} was rolled back; revision {stable_rev} serves", gen)
    else:
        st.set_condition(s, st.PROGRESSING, "False", R_COMPLETE, f"revision {stable_rev} serves all traffic", gen)

    if hold is not None:
        st.set_condition(s, st.DEGRADED, "True", R_ROLLED_BACK,
                         f"revision {hold['revision']} was rolled back ({hold.get('reason')}); revision {stable_rev} "
                         "serves. Hand over a new model version, or set spec.model.version to a good one", gen)
    elif observed.target_problem:
        st.set_condition(s, st.DEGRADED, "True", R_MODEL_NOT_FOUND, observed.target_problem, gen)
    else:
        st.set_condition(s, st.DEGRADED, "False", R_AS_EXPECTED, "", gen)

    if st.get_condition(s, st.DEGRADED)["status"] == "True":
        phase = DeploymentPhase.DEGRADED
    elif st.get_condition(s, st.PROGRESSING)["status"] == "True":
        phase = DeploymentPhase.PROGRESSING
    elif st.get_condition(s, st.AVAILABLE)["status"] == "True":
        phase = DeploymentPhase.AVAILABLE
    else:
        phase = DeploymentPhase.PROGRESSING
    s["phase"] = phase.value
