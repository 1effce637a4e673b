"""The hand-off from a FineTuneJob to the ModelDeployment named in ``spec.deploy.modelDeployment``.

When a FineTuneJob succeeds with a new model version, the FineTuneJob controller merge-patches the
ModelDeployment's **metadata annotations** (never its spec, which the user owns) with:

* ``tuneline.io/model-version``: the new version number in the Triton repository, as a string ("3")
* ``tuneline.io/model-source``: ``<namespace>/<finetunejob name>`` that produced it
* ``tuneline.io/triton-repository``: URI of the Triton model repository holding that version
* ``tuneline.io/handed-off-at``: RFC 3339 time of the hand-off
* ``tuneline.io/handed-off-over-uri``: the deployment's ``spec.model.uri`` when the hand-off was made
  (a deployment that names a repository by URI): the hand-off applies while that stays the URI, so
  a later edit of the spec wins over an earlier hand-off, and a later hand-off over the edit

The ModelDeployment controller watches these annotations and rolls the version out (canary, per its
``spec.rollout``). A ModelDeployment that uses ``spec.model.fromFineTuneJob`` can equally read
``status.artifacts.modelVersion`` of that job; the annotation is the push side for deployments that
name the job in nothing but their own spec, and it makes the hand-off visible with
``kubectl get mdep -o yaml``. The patch is idempotent: the same version handed off twice is the
same annotations.
"""

from __future__ import annotations

from typing import Any

MODEL_VERSION_ANNOTATION = "tuneline.io/model-version"
MODEL_SOURCE_ANNOTATION = "tuneline.io/model-source"
TRITON_REPOSITORY_ANNOTATION = "tuneline.io/triton-repository"
HANDED_OFF_AT_ANNOTATION = "tuneline.io/handed-off-at"
HANDED_OFF_OVER_URI_ANNOTATION = "tuneline.io/handed-off-over-uri"


def handoff_annotations(namespace: str | None, job_name: str, version: int, repository: str | None,
                        at: str) -> dict[str, str]:
    out = {MODEL_VERSION_ANNOTATION: str(version),
           MODEL_SOURCE_ANNOTATION: f"{namespace}/{job_name}" if namespace else job_name,
           HANDED_OFF_AT_ANNOTATION: at}
    if repository:
        out[TRITON_REPOSITORY_ANNOTATION] = repository
    return out


def handoff_patch(annotations: dict[str, str], model_deployment: dict[str, Any] | None = None) -> dict[str, Any]:
    """The merge patch sent to ``model_deployment`` (as read just before): the annotations, and the
    URI it names at that moment (None removes an earlier one)."""
    uri = (((model_deployment or {}).get("spec") or {}).get("model") or {}).get("uri")
    return {"metadata": {"annotations": {**annotations, HANDED_OFF_OVER_URI_ANNOTATION: uri}}}


def already_handed_off(model_deployment: dict[str, Any], version: int, source: str) -> bool:
    ann = (model_deployment.get("metadata") or {}).get("annotations") or {}
    return ann.get(MODEL_VERSION_ANNOTATION) == str(version) and ann.get(MODEL_SOURCE_ANNOTATION) == source
