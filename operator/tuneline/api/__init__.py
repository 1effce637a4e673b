"""tuneline.io/v1alpha1: the typed API models, the single source of the CRD schemas."""

from tuneline.api.common import API_VERSION, GROUP, VERSION
from tuneline.api.finetunejob import FailureReason, FineTuneJobSpec, FineTuneJobStatus, Phase
from tuneline.api.modeldeployment import DeploymentPhase, ModelDeploymentSpec, ModelDeploymentStatus
from tuneline.api.resources import RESOURCES, CustomResource, FineTuneJob, ModelDeployment

__all__ = [
    "API_VERSION", "GROUP", "VERSION", "RESOURCES", "CustomResource",
    "FineTuneJob", "FineTuneJobSpec", "FineTuneJobStatus", "Phase", "FailureReason",
    "ModelDeployment", "ModelDeploymentSpec", "ModelDeploymentStatus", "DeploymentPhase",
]
