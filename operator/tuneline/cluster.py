"""The CLI's side of a real cluster: kubeconfig loading (``KUBECONFIG`` / ``--kubeconfig`` /
``--context``, the default namespace from the context, in-cluster credentials as a last resort),
server-side apply of tuneline manifests and reads of FineTuneJobs / ModelDeployments, as JSON
objects or as the server's Table (the CRDs' printer columns, what ``kubectl get`` shows).

Pure helpers (resource-type aliases, the apply verdict, table formatting, ages) live here too so
they are unit-tested without a cluster. The operator's own client is ``controllers/kube.py``; this
module does not import it (importing ``tuneline.controllers`` registers the kopf handlers) and keeps
its own transport settings: a CLI fails fast with one clear line when the server is unreachable
instead of retrying like a controller.
"""

from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urlencode

from tuneline.api import API_VERSION, RESOURCES

FIELD_MANAGER = "tuneline-cli"
GROUP = API_VERSION.split("/")[0]
TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True)
class ResourceType:
    kind: str
    plural: str
    singular: str
    short: str

    @property
    def qualified(self) -> str:
        """``finetunejob.tuneline.io``: how kubectl names an object of this type (``<this>/<name>``)."""
        return f"{self.singular}.{GROUP}"

    def path(self, namespace: str | None, name: str | None = None) -> str:
        base = f"/apis/{API_VERSION}"
        p = f"{base}/namespaces/{namespace}/{self.plural}" if namespace else f"{base}/{self.plural}"
        return f"{p}/{name}" if name else p


def _resource_type(kind: str) -> ResourceType:
    """From the API models, the one home of kinds, plurals and short names."""
    model = RESOURCES[kind]
    return ResourceType(model.kind_name, model.plural, model.kind_name.lower(), model.short_names[0])


FINETUNEJOB = _resource_type("FineTuneJob")
MODELDEPLOYMENT = _resource_type("ModelDeployment")
RESOURCE_TYPES = (FINETUNEJOB, MODELDEPLOYMENT)
BY_KIND = {rt.kind: rt for rt in RESOURCE_TYPES}
ALL_ALIASES = ("all", "tuneline")  # `tuneline` is the CRDs' category


def _aliases() -> dict[str, tuple[ResourceType, ...]]:
    out: dict[str, tuple[ResourceType, ...]] = {a: RESOURCE_TYPES for a in ALL_ALIASES}
    for rt in RESOURCE_TYPES:
        for alias in (rt.plural, rt.singular, rt.short, rt.kind.lower(), f"{rt.plural}.{GROUP}", rt.qualified):
            out[alias] = (rt,)
    return out


ALIASES = _aliases()
TYPE_CHOICES = "finetunejobs (ftj), modeldeployments (mdep) or all"


def resolve_types(arg: str) -> tuple[ResourceType, ...]:
    """``ftj`` → (FINETUNEJOB,), ``all`` → both; ValueError naming the choices otherwise."""
    try:
        return ALIASES[arg.lower()]
    except KeyError:
        raise ValueError(f"unknown resource type {arg!r}: expected {TYPE_CHOICES}") from None


def parse_get_args(resource: str | None, name: str | None) -> tuple[tuple[ResourceType, ...], str | None]:
    """``get``'s positional arguments, kubectl style: ``TYPE [NAME]`` or ``TYPE/NAME``; none means all."""
    if resource is None:
        return RESOURCE_TYPES, None
    if "/" in resource:
        if name is not None:
            raise ValueError(f"there is no need to give a name after {resource!r}")
        type_part, _, name_part = resource.partition("/")
        if not name_part:
            raise ValueError(f"{resource!r}: expected TYPE/NAME")
        types = resolve_types(type_part)
        if len(types) != 1:
            raise ValueError(f"{resource!r}: TYPE/NAME needs one type: {TYPE_CHOICES.removesuffix(' or all')}")
        return types, name_part
    return resolve_types(resource), name


# --- errors ----------------------------------------------------------------------------------------

class ApiError(Exception):
    """An HTTP error from the API server; ``body`` is its metav1.Status JSON (or raw text)."""

    def __init__(self, status: int, reason: str, body: str = ""):
        self.status = status
        self.reason = reason
        self.body = body
        super().__init__(f"{status} {reason}: {body[:500]}")


class ConfigError(Exception):
    """No usable kubeconfig / context. ``bad_input`` when an option the user gave is at fault."""

    def __init__(self, message: str, bad_input: bool = False):
        super().__init__(message)
        self.bad_input = bad_input


class Unreachable(Exception):
    def __init__(self, server: str, reason: str):
        self.server = server
        self.reason = reason
        super().__init__(f"cannot reach the Kubernetes API server at {server}: {reason}")


def server_message(err: ApiError) -> str:
    """The API server's own message (metav1.Status.message) from an error, else its raw body."""
    try:
        status = json.loads(err.body)
    except (TypeError, ValueError):
        status = None
    if isinstance(status, dict) and status.get("message"):
        return str(status["message"])
    body = (err.body or "").strip()
    return body or f"{err.status} {err.reason}".strip()


def server_reason(err: ApiError) -> str:
    """metav1.Status.reason (Invalid, Conflict, Forbidden, ...) or the HTTP reason."""
    try:
        status = json.loads(err.body)
        if isinstance(status, dict) and status.get("reason"):
            return str(status["reason"])
    except (TypeError, ValueError):
        pass
    return err.reason or str(err.status)


def is_status_body(err: ApiError) -> bool:
    """A 404 with a metav1.Status body is "object not found"; a bare 404 means the API (the CRD) is missing."""
    try:
        return json.loads(err.body).get("kind") == "Status"
    except (TypeError, ValueError, AttributeError):
        return False


def _unreachable_reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    m = re.search(r"Failed to establish a new connection: (?:\[Errno -?\d+\] )?(.*)", text)
    if m:
        return m.group(1).strip().rstrip(")'\"").lower()
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return "TLS certificate verification failed"
    if "timed out" in text.lower():
        return "timed out"
    return text.split(": ", 1)[-1] if text.startswith("<") else text


# --- connecting ------------------------------------------------------------------------------------

def _kubeconfig_paths(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    env = os.environ.get("KUBECONFIG")
    if env and any(Path(p).expanduser().exists() for p in env.split(os.pathsep) if p):
        return env
    default = Path("~/.kube/config").expanduser()
    return str(default) if default.exists() else None


@dataclass
class Cluster:
    api: Any  # kubernetes.client.ApiClient
    server: str
    context: str | None
    namespace: str
    timeout: tuple[float, float] = (10.0, 60.0)  # connect, read

    # --- transport ---------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                query: dict[str, Any] | None = None, accept: str = "application/json") -> dict[str, Any]:
        import urllib3
        from kubernetes.client.exceptions import ApiException

        url = f"{path}?{urlencode(query)}" if query else path
        headers = {"Accept": accept, "Content-Type": content_type, "User-Agent": "tuneline-cli"}
        _method, full_url, header_params, ser_body, post = self.api.param_serialize(
            method=method, resource_path=url, header_params=headers, body=body, auth_settings=["BearerToken"])
        try:
            resp = self.api.call_api(_method, full_url, header_params=header_params, body=ser_body,
                                     post_params=post, _request_timeout=self.timeout)
        except ApiException as exc:
            raise ApiError(exc.status or 0, exc.reason or "", str(exc.body or "")) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unreachable(self.server, _unreachable_reason(exc)) from None
        data = resp.read()
        text = data.decode() if isinstance(data, bytes) else (data or "")
        if not 200 <= resp.status < 300:
            raise ApiError(resp.status, resp.reason or "", text)
        return json.loads(text) if text else {}

    # --- verbs -------------------------------------------------------------------------------------
    def get(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.request("GET", rt.path(namespace, name))
        except ApiError as exc:
            if exc.status == 404 and is_status_body(exc):
                return None
            raise

    def list(self, rt: ResourceType, namespace: str | None, selector: str | None = None) -> list[dict[str, Any]]:
        query = {"labelSelector": selector} if selector else None
        return self.request("GET", rt.path(namespace), query=query).get("items") or []

    def table(self, rt: ResourceType, namespace: str | None, name: str | None = None,
              selector: str | None = None) -> dict[str, Any]:
        """The server-side Table (printer columns); a missing ``name`` raises ApiError 404."""
        query = {"includeObject": "Metadata"}
        if selector and not name:
            query["labelSelector"] = selector
        return self.request("GET", rt.path(namespace, name), query=query, accept=TABLE_ACCEPT)

    def apply(self, doc: dict[str, Any], namespace: str, dry_run: bool = False,
              force: bool = False) -> dict[str, Any]:
        """Server-side apply of one manifest (field manager ``tuneline-cli``); the object as the server has it."""
        rt = BY_KIND[doc["kind"]]
        query: dict[str, Any] = {"fieldManager": FIELD_MANAGER}
        if force:
            query["force"] = "true"
        if dry_run:
            query["dryRun"] = "All"
        return self.request("PATCH", rt.path(namespace, doc["metadata"]["name"]), body=json.dumps(doc),
                            content_type="application/apply-patch+yaml", query=query)


def connect(kubeconfig: str | None = None, context: str | None = None) -> Cluster:
    """A client from the kubeconfig (``--kubeconfig``, else ``$KUBECONFIG``, else ``~/.kube/config``;
    ``--context``, else its current context), or in-cluster credentials when there is no kubeconfig."""
    try:
        from kubernetes import client, config
    except ImportError:
        raise ConfigError("talking to a cluster needs the Kubernetes client: pip install 'tuneline[operator]'") from None

    if kubeconfig and not all(Path(p).expanduser().exists() for p in kubeconfig.split(os.pathsep) if p):
        raise ConfigError(f"--kubeconfig {kubeconfig}: file not found", bad_input=True)
    paths = _kubeconfig_paths(kubeconfig)
    cfg = client.Configuration()
    if paths is None:
        if context:
            raise ConfigError(f"--context {context}: no kubeconfig found (set KUBECONFIG or pass --kubeconfig)",
                              bad_input=True)
        try:
            config.load_incluster_config(client_configuration=cfg)
        except config.ConfigException:
            raise ConfigError("no kubeconfig found: set KUBECONFIG or pass --kubeconfig "
                              "(looked in $KUBECONFIG and ~/.kube/config)") from None
        namespace = (IN_CLUSTER_NAMESPACE.read_text().strip() if IN_CLUSTER_NAMESPACE.exists() else "") or "default"
        context_name = None
    else:
        try:
            contexts, active = config.list_kube_config_contexts(config_file=paths)
        except (config.ConfigException, OSError, ValueError) as exc:
            raise ConfigError(f"kubeconfig {paths}: {exc}", bad_input=bool(kubeconfig)) from None
        if context:
            chosen = next((c for c in contexts or [] if c.get("name") == context), None)
            if chosen is None:
                names = ", ".join(c.get("name", "?") for c in contexts or []) or "none"
                raise ConfigError(f"--context {context}: no such context in {paths} (contexts: {names})",
                                  bad_input=True)
        else:
            chosen = active
        try:
            config.load_kube_config(config_file=paths, context=context, client_configuration=cfg,
                                    persist_config=False)
        except (config.ConfigException, OSError, ValueError) as exc:
            raise ConfigError(f"kubeconfig {paths}: {exc}", bad_input=bool(kubeconfig or context)) from None
        namespace = ((chosen or {}).get("context") or {}).get("namespace") or "default"
        context_name = (chosen or {}).get("name")
    cfg.retries = 1  # a CLI reports an unreachable server at once rather than backing off like a controller
    return Cluster(api=client.ApiClient(cfg), server=cfg.host, context=context_name, namespace=namespace)


# --- apply -----------------------------------------------------------------------------------------

_VOLATILE_METADATA = ("resourceVersion", "managedFields", "generation")


def _comparable(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    meta = out.get("metadata") or {}
    for key in _VOLATILE_METADATA:
        meta.pop(key, None)
    return out


def apply_verdict(before: dict[str, Any] | None, after: dict[str, Any]) -> str:
    """What kubectl prints: ``created`` (it did not exist), ``unchanged`` (the apply changed nothing
    the object holds; field ownership alone does not count) or ``configured``."""
    if before is None:
        return "created"
    return "unchanged" if _comparable(before) == _comparable(after) else "configured"


def target_namespace(doc: dict[str, Any], flag: str | None, default: str) -> str:
    """kubectl's rule: the manifest's namespace, unless ``-n`` names another (an error)."""
    own = (doc.get("metadata") or {}).get("namespace")
    if own and flag and own != flag:
        raise ValueError(f"the namespace from the manifest ({own!r}) does not match --namespace {flag!r}")
    return own or flag or default


# --- get -------------------------------------------------------------------------------------------

def human_age(seconds: float) -> str:
    """kubectl's duration.HumanDuration: 45s, 3m20s, 15m, 5h3m, 2d4h, 40d, 3y20d."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = hours // 24 - 365 * (hours // 24 // 365)
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def _age(timestamp: Any, now: datetime) -> str:
    if not timestamp:
        return "<unknown>"
    try:
        then = datetime.fromisoformat(str(timestamp).replace("Z", "+00:00"))
    except ValueError:
        return str(timestamp)
    return human_age((now - then).total_seconds())


def _cell(value: Any, column_type: str, now: datetime) -> str:
    if value is None:
        return ""
    if column_type == "date":
        return _age(value, now)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def table_rows(table: dict[str, Any], rt: ResourceType, *, wide: bool = False, with_namespace: bool = False,
               qualify: bool = False, now: datetime | None = None) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) from a meta.k8s.io Table: priority-0 columns (all with ``wide``), NAMESPACE first
    with ``with_namespace``, names as ``finetunejob.tuneline.io/NAME`` with ``qualify`` (kubectl get all)."""
    now = now or datetime.now(timezone.utc)
    columns = [(i, c) for i, c in enumerate(table.get("columnDefinitions") or [])
               if wide or not c.get("priority")]
    headers = [c["name"].upper() for _, c in columns]
    rows = []
    for row in table.get("rows") or []:
        cells = row.get("cells") or []
        out = [_cell(cells[i] if i < len(cells) else None, c.get("type", "string"), now) for i, c in columns]
        if qualify and headers and headers[0] == "NAME":
            out[0] = f"{rt.qualified}/{out[0]}"
        if with_namespace:
            out.insert(0, ((row.get("object") or {}).get("metadata") or {}).get("namespace", ""))
        rows.append(out)
    if with_namespace:
        headers.insert(0, "NAMESPACE")
    return headers, rows


def format_columns(headers: list[str], rows: Iterable[list[str]]) -> str:
    """kubectl's plain table: left-aligned columns three spaces apart, no trailing padding."""
    rows = [headers, *rows]
    widths = [max(len(r[i]) if i < len(r) else 0 for r in rows) for i in range(len(headers))]
    lines = []
    for r in rows:
        cells = [c.ljust(widths[i]) if i < len(r) - 1 else c for i, c in enumerate(r)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


def without_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """What ``kubectl get -o yaml`` shows by default: the object without metadata.managedFields."""
    out = copy.deepcopy(obj)
    (out.get("metadata") or {}).pop("managedFields", None)
    return out


def as_list(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": objects}
