"""A small, generic Kubernetes REST helper on top of the official client's transport (auth, TLS,
kubeconfig/in-cluster loading): get / list / create / merge-patch / delete of any object by
apiVersion + kind, JSON dicts in and out, errors as :class:`ApiError` with the HTTP status.

Transient failures (429, 5xx, connection errors) are retried here with exponential backoff; 409
Conflict is left to the caller, who re-reads and decides again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any
from urllib.parse import urlencode

log = logging.getLogger(__name__)

# apiVersion/kind -> plural (namespaced kinds tuneline touches)
PLURALS = {
    ("tuneline.io/v1alpha1", "FineTuneJob"): "finetunejobs",
    ("tuneline.io/v1alpha1", "ModelDeployment"): "modeldeployments",
    ("ray.io/v1", "RayJob"): "rayjobs",
    ("batch/v1", "Job"): "jobs",
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "ServiceAccount"): "serviceaccounts",
    ("v1", "Pod"): "pods",
    ("v1", "Event"): "events",
    ("rbac.authorization.k8s.io/v1", "Role"): "roles",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "rolebindings",
}
TRANSIENT = {429, 500, 502, 503, 504}


class ApiError(Exception):
    def __init__(self, status: int, reason: str, body: str = ""):
        self.status = status
        self.reason = reason
        self.body = body
        super().__init__(f"{status} {reason}: {body[:500]}")

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def already_exists(self) -> bool:
        return self.status == 409 and '"AlreadyExists"' in self.body


def path(api_version: str, kind: str, namespace: str | None, name: str | None = None, sub: str | None = None) -> str:
    plural = PLURALS[(api_version, kind)]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    p = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
    if name:
        p += f"/{name}"
    if sub:
        p += f"/{sub}"
    return p


class Kube:
    """Thread-safe (one urllib3 pool); every call retried on transient errors."""

    def __init__(self, api_client=None, retries: int = 4, backoff: float = 0.25, timeout: float = 30):
        if api_client is None:
            api_client = make_api_client()
        self.api = api_client
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self._lock = threading.Lock()

    def request(self, method: str, url: str, body: Any = None, content_type: str = "application/json",
                query: dict[str, Any] | None = None) -> dict[str, Any]:
        if query:
            url = f"{url}?{urlencode(query)}"
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                return self._once(method, url, body, content_type)
            except ApiError as exc:
                if exc.status not in TRANSIENT or attempt == self.retries:
                    raise
                log.warning("%s %s: %s; retrying in %.2f s", method, url, exc.status, delay)
            except Exception as exc:  # noqa: BLE001 - urllib3 connection errors, timeouts
                if attempt == self.retries:
                    raise
                log.warning("%s %s: %s; retrying in %.2f s", method, url, exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    def _once(self, method: str, url: str, body: Any, content_type: str) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        headers = {"Accept": "application/json", "Content-Type": content_type}
        _method, full_url, header_params, ser_body, post = self.api.param_serialize(
            method=method, resource_path=url, header_params=headers, body=body, auth_settings=["BearerToken"])
        try:
            resp = self.api.call_api(_method, full_url, header_params=header_params, body=ser_body,
                                     post_params=post, _request_timeout=self.timeout)
        except ApiException as exc:
            raise ApiError(exc.status or 0, exc.reason or "", str(exc.body or "")) from None
        data = resp.read()
        text = data.decode() if isinstance(data, bytes) else (data or "")
        if not 200 <= resp.status < 300:
            raise ApiError(resp.status, resp.reason or "", text)
        return json.loads(text) if text else {}

    # --- verbs -----------------------------------------------------------------------------------
    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return self.request("GET", path(api_version, kind, namespace, name))
        except ApiError as exc:
            if exc.not_found:
                return None
            raise

    def list(self, api_version: str, kind: str, namespace: str | None,
             label_selector: str | None = None) -> list[dict[str, Any]]:
        query = {"labelSelector": label_selector} if label_selector else None
        return self.request("GET", path(api_version, kind, namespace), query=query).get("items") or []

    def create(self, obj: dict[str, Any], namespace: str | None = None) -> tuple[dict[str, Any] | None, bool]:
        """Create if absent: (object, created). An existing object of that name is left untouched.

        Only a 409 whose reason is ``AlreadyExists`` means the object is there; any other 409
        (``Conflict``) created nothing and is raised, for the caller to decide again."""
        ns = namespace or obj["metadata"].get("namespace")
        try:
            return self.request("POST", path(obj["apiVersion"], obj["kind"], ns), body=obj), True
        except ApiError as exc:
            if exc.already_exists:
                return None, False
            raise

    def patch(self, api_version: str, kind: str, namespace: str | None, name: str, patch: dict[str, Any],
              subresource: str | None = None) -> dict[str, Any]:
        return self.request("PATCH", path(api_version, kind, namespace, name, subresource), body=patch,
                            content_type="application/merge-patch+json")

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str,
               propagation: str = "Background") -> bool:
        try:
            self.request("DELETE", path(api_version, kind, namespace, name),
                         body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation})
            return True
        except ApiError as exc:
            if exc.not_found:
                return False
            raise

    def delete_collection(self, api_version: str, kind: str, namespace: str, label_selector: str,
                          propagation: str = "Background") -> None:
        try:
            self.request("DELETE", path(api_version, kind, namespace), query={"labelSelector": label_selector},
                         body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation})
        except ApiError as exc:
            if not exc.not_found:
                raise


def make_api_client():
    """In-cluster credentials when running in a pod, else $KUBECONFIG / ~/.kube/config."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
        return client.ApiClient()
    except config.ConfigException:
        return config.new_client_from_config()
