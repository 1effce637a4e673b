{{/*
The operator's namespaced permissions, shared by the ClusterRole (rbac.scope=cluster) and the
per-namespace Roles (rbac.scope=namespace). Each rule says why it is there. No wildcards; no
Secrets (see rbac.secretNames); no RBAC objects, so the operator cannot grant anything.
*/}}
{{- define "tuneline.operatorRules" -}}
# watch and reconcile tuneline's own resources; patch = kopf's progress annotations/finalizers
# and the FineTuneJob handing a new model version to a ModelDeployment
- apiGroups: [tuneline.io]
  resources: [finetunejobs, modeldeployments]
  verbs: [get, list, watch, patch]
# write status (phase, conditions, progress, history)
- apiGroups: [tuneline.io]
  resources: [finetunejobs/status, modeldeployments/status]
  verbs: [get, patch, update]
# owner references with blockOwnerDeletion on the children need update on the owner's finalizers
- apiGroups: [tuneline.io]
  resources: [finetunejobs/finalizers, modeldeployments/finalizers]
  verbs: [update]
# training (FineTuneJob controller): one KubeRay RayJob per attempt (suspended/resumed by patch),
# the training ConfigMap and the export Job; deletecollection = cleanup of a job's children by
# label selector (ttlSecondsAfterFinished, deletion)
- apiGroups: [ray.io]
  resources: [rayjobs]
  verbs: [get, list, watch, create, patch, delete, deletecollection]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, patch, delete, deletecollection]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, patch, delete, deletecollection]
# per-job workload identity: a ServiceAccount, and a Role + RoleBinding that let the job's pods
# get their own FineTuneJob and patch its status (resourceNames = that job). No patch/update, no
# bind/escalate: the API server only lets the operator create Roles/RoleBindings whose rules it
# holds itself, so it can never grant more than it has.
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [get, list, create, delete, deletecollection]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [get, list, create, delete, deletecollection]
# serving (ModelDeployment controller): Services of the Triton deployments
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch, delete]
# Triton + gateway Deployments (stable and canary revisions)
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
# replica counts of the stable and canary revisions (canary weight by replica ratio, fixed replicas)
- apiGroups: [apps]
  resources: [deployments/scale]
  verbs: [get, patch]
# canary analysis without Prometheus: find the revision's pods to read their gateway /metrics
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
# autoscaling on GPU utilisation
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, delete]
# scraping of the Triton/gateway pods by prometheus-operator
- apiGroups: [monitoring.coreos.com]
  resources: [podmonitors, servicemonitors]
  verbs: [get, list, watch, create, patch, delete]
# scale-to-zero (optional KEDA)
- apiGroups: [keda.sh]
  resources: [scaledobjects]
  verbs: [get, list, watch, create, patch, delete]
# canary traffic split (optional Gateway API)
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get, list, watch, create, patch, delete]
# Kubernetes Events for every transition (kopf posts core/v1 Events)
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- with .Values.rbac.secretNames }}
# opt-in: read only these Secrets, by name
- apiGroups: [""]
  resources: [secrets]
  resourceNames: {{ toJson (uniq .) }}
  verbs: [get]
{{- end }}
{{- end -}}

{{/* kopf peering: watch the peering objects, patch only our own */}}
{{- define "tuneline.peeringRules" -}}
{{- $resource := index . 0 -}}
{{- $name := index . 1 -}}
- apiGroups: [kopf.dev]
  resources: [{{ $resource }}]
  verbs: [get, list, watch]
- apiGroups: [kopf.dev]
  resources: [{{ $resource }}]
  resourceNames: [{{ $name | quote }}]
  verbs: [patch]
{{- end -}}
