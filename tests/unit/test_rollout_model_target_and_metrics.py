"""Which model a ModelDeployment asks for (spec, FineTuneJob, hand-off annotation), and the canary
metrics sources (PromQL queries, scraping the gateways' /metrics)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from serving_cases import raw, spec
from tuneline.builders.serving import ServedModel
from tuneline.controllers.canary_metrics import (PodScrapeSource, PrometheusSource, parse_gateway_metrics,
                                                 quantile_from_buckets)
from tuneline.controllers.handoff import handoff_annotations
from tuneline.controllers.modeldeployment import observe_revisions, resolve_target

JOB = {"status": {"phase": "Succeeded", "artifacts": {"tritonRepository": "pvc://models/bank-assistant/triton",
                                                      "modelVersion": 3}}}


def _body(annotations=None, **spec_overrides):
    b = raw(**spec_overrides)
    b["metadata"]["annotations"] = annotations or {}
    return b


def test_from_finetunejob_serves_its_newest_version():
    model, msg, problem = resolve_target(_body(), spec(), JOB)
    assert model == ServedModel("bank-assistant", "pvc://models/bank-assistant/triton", 3) and msg is None


def test_a_newer_handoff_annotation_wins_and_a_pinned_version_wins_over_both():
    ann = handoff_annotations("team-a", "bank-assistant", 4, "pvc://models/bank-assistant/triton", "2025-01-01T00:00:00Z")
    assert resolve_target(_body(ann), spec(), JOB)[0].version == 4
    pinned = spec(model={"fromFineTuneJob": "bank-assistant", "version": 2})
    assert resolve_target(_body(ann), pinned, JOB)[0].version == 2
    # a hand-off from another job is not this deployment's model
    other = handoff_annotations("team-a", "other", 9, "pvc://models/other/triton", "2025-01-01T00:00:00Z")
    assert resolve_target(_body(other), spec(), JOB)[0].version == 3


def test_a_hand_off_version_int_cannot_read_is_ignored_not_raised():
    """'²' is a digit to str.isdigit() but not to int(): it failed every reconcile with ValueError."""
    for written in ("²", "٣", "4 ", "-1"):
        ann = handoff_annotations("team-a", "bank-assistant", 4, "pvc://models/bank-assistant/triton",
                                  "2025-01-01T00:00:00Z")
        ann = {k: (written if v == "4" else v) for k, v in ann.items()}
        assert resolve_target(_body(ann), spec(), JOB)[0].version == 3, written
    deployment = {"metadata": {"labels": {"tuneline.io/revision": "2"},
                               "annotations": {"tuneline.io/model-name": "m", "tuneline.io/model-uri": "pvc://x/t",
                                               "tuneline.io/model-version": "²"}},
                  "spec": {"replicas": 1}, "status": {}}
    assert observe_revisions([deployment])[2].model.version is None


def test_a_uri_deployments_spec_edited_after_a_hand_off_wins_and_a_later_hand_off_wins_again():
    """A hand-off used to win over the deployment's spec.model.uri for good: a user who pointed the
    deployment elsewhere afterwards kept getting the job's model. The hand-off records the URI it
    replaced, and applies while that is still the spec's."""
    from tuneline.controllers.handoff import handoff_patch

    uri_a, uri_b = "pvc://models/a/triton", "pvc://models/b/triton"
    body = _body(model={"uri": uri_a})
    ann = handoff_patch(handoff_annotations("team-a", "bank-assistant", 4, "pvc://models/bank-assistant/triton",
                                            "2025-01-01T00:00:00Z"), body)["metadata"]["annotations"]
    handed = resolve_target(_body(ann, model={"uri": uri_a}), spec(model={"uri": uri_a}), None)[0]
    assert handed == ServedModel("bank-assistant", "pvc://models/bank-assistant/triton", 4)
    edited = resolve_target(_body(ann, model={"uri": uri_b}), spec(model={"uri": uri_b}), None)[0]
    assert edited == ServedModel("bank-assistant", uri_b, None)   # the deployment's own name and URI
    again = handoff_patch(ann, _body(model={"uri": uri_b}))["metadata"]["annotations"]
    assert resolve_target(_body(again, model={"uri": uri_b}), spec(model={"uri": uri_b}), None)[0].version == 4
    # an annotation written before the URI was recorded still applies
    legacy = {k: v for k, v in ann.items() if k != "tuneline.io/handed-off-over-uri"}
    assert resolve_target(_body(legacy, model={"uri": uri_b}), spec(model={"uri": uri_b}), None)[0].version == 4
    # a bare export is no repository to pick a version from
    bare = {"uri": "pvc://models/a/export", "format": "onnx"}
    bare_spec = spec(model=bare, task="sequence-classification", resources={"gpus": 1})
    assert resolve_target(_body(legacy, model=bare), bare_spec, None)[0].repository == "pvc://models/a/export"


def test_waiting_for_a_job_is_not_a_problem_a_missing_job_is():
    model, msg, problem = resolve_target(_body(), spec(), {"status": {"phase": "Training"}})
    assert model is None and not problem and "Training" in msg
    model, msg, problem = resolve_target(_body(), spec(), None)
    assert model is None and problem and "not found" in msg


def test_uri_model_and_handoff_onto_a_uri_deployment():
    s = spec(model={"uri": "pvc://models/classifier/triton", "version": 1})
    assert resolve_target(_body(), s, None)[0] == ServedModel("bank-assistant", "pvc://models/classifier/triton", 1)
    ann = handoff_annotations("team-a", "trainer", 5, "pvc://models/trainer/triton", "2025-01-01T00:00:00Z")
    s = spec(model={"uri": "pvc://models/classifier/triton"})
    assert resolve_target(_body(ann), s, None)[0] == ServedModel("trainer", "pvc://models/trainer/triton", 5)


def test_file_uris_are_a_problem_in_a_cluster():
    model, msg, problem = resolve_target(_body(), spec(model={"uri": "file:///models/x"}), None)
    assert model is None and problem and "file://" in msg


def test_observed_revisions_from_deployments():
    d = {"metadata": {"labels": {"tuneline.io/revision": "2"}, "generation": 3,
                      "annotations": {"tuneline.io/model-name": "m", "tuneline.io/model-uri": "pvc://a/b",
                                      "tuneline.io/model-version": "4"}},
         "spec": {"replicas": 2}, "status": {"readyReplicas": 2, "updatedReplicas": 1}}
    assert observe_revisions([d]) == {2: __import__("tuneline.controllers.rollout", fromlist=["x"]).RevisionState(
        2, ServedModel("m", "pvc://a/b", 4), 2, 1)}


def test_promql_selects_the_revision_and_the_step_window():
    q = PrometheusSource.queries("ns", "bank", 3, 45)
    assert 'tuneline_io_revision="3"' in q["requests"] and "[45s]" in q["requests"]
    assert 'status=~"5.."' in q["errors"] and q["p99_ms"].startswith("histogram_quantile(0.99")


GATEWAY_METRICS = """# TYPE tuneline_gateway_requests_total counter
tuneline_gateway_requests_total{route="/v1/chat/completions",status="200"} %d
tuneline_gateway_requests_total{route="/v1/chat/completions",status="503"} %d
# TYPE tuneline_gateway_request_duration_seconds histogram
tuneline_gateway_request_duration_seconds_bucket{route="/v1/chat/completions",le="0.1"} %d
tuneline_gateway_request_duration_seconds_bucket{route="/v1/chat/completions",le="1.0"} %d
tuneline_gateway_request_duration_seconds_bucket{route="/v1/chat/completions",le="+Inf"} %d
tuneline_gateway_request_duration_seconds_count{route="/v1/chat/completions"} %d
tuneline_gateway_request_duration_seconds_sum{route="/v1/chat/completions"} 1.0
"""


def test_parse_and_quantile():
    r, e, b = parse_gateway_metrics(GATEWAY_METRICS % (90, 10, 50, 100, 100, 100))
    assert (r, e) == (100, 10) and b == {0.1: 50, 1.0: 100, float("inf"): 100}
    assert abs(quantile_from_buckets(b, 0.99) - 0.982) < 1e-9
    assert quantile_from_buckets({}, 0.99) is None


def test_pod_scrape_source_measures_from_the_step_start():
    texts = {"10.0.0.1": GATEWAY_METRICS % (90, 10, 50, 100, 100, 100)}
    pods = [{"metadata": {"name": "p1"}, "status": {"podIP": "10.0.0.1"}}]
    src = PodScrapeSource(lambda ns, sel: pods, fetch=lambda url: texts[url.split("//")[1].split(":")[0]])
    t0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    first = src.canary_metrics("ns", "bank", 2, t0, t0)
    assert first.requests == 0 and first.errors == 0  # the baseline
    texts["10.0.0.1"] = GATEWAY_METRICS % (180, 30, 60, 200, 200, 200)
    m = src.canary_metrics("ns", "bank", 2, t0, t0 + timedelta(seconds=30))
    assert (m.requests, m.errors) == (110, 20) and m.error_rate == 20 / 110
    assert m.p99_ms is not None and 100 < m.p99_ms <= 1000
