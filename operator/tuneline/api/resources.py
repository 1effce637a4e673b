"""The two custom resources as whole objects, and parsing of manifests into them."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from tuneline.api.base import ApiModel, rule
from tuneline.api.common import API_VERSION
from tuneline.api.finetunejob import FineTuneJobSpec, FineTuneJobStatus
from tuneline.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus


class ObjectMeta(ApiModel):
    """The part of metav1.ObjectMeta tuneline reads; the API server owns the rest."""

    model_config = ApiModel.model_config | {"extra": "allow"}
    name: str = Field(..., pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=52)
    namespace: str | None = Field(None, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("labels")
    @classmethod
    def _labels_as_the_api_server_takes_them(cls, labels: dict[str, str]) -> dict[str, str]:
        for key, value in labels.items():
            prefix, _, name = key.rpartition("/")
            if (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix))) or \
                    len(name) > 63 or not _LABEL_VALUE.fullmatch(name) or not name:
                raise ValueError(f"label key {key!r}: [prefix/]name, the name at most 63 letters, digits, "
                                 "'-', '_' or '.', starting and ending with a letter or digit")
            if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
                raise ValueError(f"label {key}={value!r}: a value is at most 63 letters, digits, '-', '_' or '.', "
                                 "starting and ending with a letter or digit (or empty)")
        return labels


_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# names become parts of child object names (Deployments, Services, RayJobs): a DNS label, unlike
# the dotted subdomains the API server would otherwise allow for custom resources
_NAME_RULE = rule(f"self.metadata.name.matches('{_NAME_PATTERN}') && size(self.metadata.name) <= 52",
                  "metadata.name must be a DNS label (lowercase letters, digits and '-') of at most 52 characters",
                  lambda obj: True)  # locally ObjectMeta.name carries the same pattern


class CustomResource(ApiModel):
    api_version: Literal["tuneline.io/v1alpha1"] = API_VERSION
    metadata: ObjectMeta

    kind_name: ClassVar[str]
    plural: ClassVar[str]
    short_names: ClassVar[tuple[str, ...]]
    printer_columns: ClassVar[tuple[dict[str, Any], ...]]

    # rules over the whole object (metadata, spec and status together)
    rules = (_NAME_RULE,)


class FineTuneJob(CustomResource):
    kind: Literal["FineTuneJob"] = "FineTuneJob"
    spec: FineTuneJobSpec
    status: FineTuneJobStatus | None = None

    kind_name = "FineTuneJob"
    plural = "finetunejobs"
    short_names = ("ftj",)
    printer_columns = (
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Progress", "type": "string", "jsonPath": ".status.progress.percent", "description": "percent"},
        {"name": "Method", "type": "string", "jsonPath": ".spec.method.type"},
        {"name": "Eval Loss", "type": "number", "jsonPath": ".status.metrics.evalLoss"},
        {"name": "Version", "type": "integer", "jsonPath": ".status.artifacts.modelVersion"},
        {"name": "Base Model", "type": "string", "jsonPath": ".spec.baseModel.uri", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    )
    rules = (
        _NAME_RULE,
        rule("!has(oldSelf.status) || !has(oldSelf.status.phase) || oldSelf.status.phase in ['Pending', 'Queued', "
             "'Suspended'] || self.spec.baseModel == oldSelf.spec.baseModel",
             "spec.baseModel is immutable once training has started; create a new FineTuneJob instead"),
        rule("!has(oldSelf.status) || !has(oldSelf.status.phase) || oldSelf.status.phase in ['Pending', 'Queued', "
             "'Suspended'] || self.spec.method == oldSelf.spec.method",
             "spec.method is immutable once training has started; create a new FineTuneJob instead"),
        # the export Job is built from the spec when training ends, while training wrote its snapshot
        # of it: an edit in between would export to another place, or in another way, than trained for
        rule("!has(oldSelf.status) || !has(oldSelf.status.phase) || oldSelf.status.phase in ['Pending', 'Queued', "
             "'Suspended'] || self.spec.output == oldSelf.spec.output",
             "spec.output is immutable once training has started; create a new FineTuneJob instead"),
        rule("!has(oldSelf.status) || !has(oldSelf.status.phase) || oldSelf.status.phase in ['Pending', 'Queued', "
             "'Suspended'] || (has(self.spec.export) == has(oldSelf.spec.export) && "
             "(!has(self.spec.export) || self.spec.export == oldSelf.spec.export))",
             "spec.export is immutable once training has started; create a new FineTuneJob instead"),
    )


class ModelDeployment(CustomResource):
    kind: Literal["ModelDeployment"] = "ModelDeployment"
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus | None = None

    kind_name = "ModelDeployment"
    plural = "modeldeployments"
    short_names = ("mdep",)
    printer_columns = (
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Revision", "type": "integer", "jsonPath": ".status.revision"},
        {"name": "Canary", "type": "string", "jsonPath": ".status.canary.weight", "description": "canary weight %"},
        {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
        {"name": "Replicas", "type": "integer", "jsonPath": ".status.replicas"},
        {"name": "URL", "type": "string", "jsonPath": ".status.url", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    )
    rules = (
        _NAME_RULE,
        # the name is the Service clients call, and a Service name is a DNS-1035 label (as for
        # KServe's InferenceService)
        rule("self.metadata.name.matches('^[a-z]')",
             "metadata.name of a ModelDeployment must start with a letter: it names the Service clients call "
             "(a DNS-1035 label)",
             lambda obj: obj.metadata.name[:1].isascii() and obj.metadata.name[:1].isalpha()),
    )


RESOURCES: dict[str, type[CustomResource]] = {m.kind_name: m for m in (FineTuneJob, ModelDeployment)}
