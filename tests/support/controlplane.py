"""A real Kubernetes control plane for tests: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok (simulated nodes), all started from the binaries that
``hack/build-controlplane.sh`` builds from Go modules.

    with ControlPlane(bin_dir) as cp:          # or cp.start() ... cp.stop()
        cp.kubectl("get", "nodes")

Everything lives in one temporary directory (certificates, etcd data, logs, kubeconfig). Every
process runs in its own session (process group) and is killed as a group on :meth:`stop`, which
also runs from ``atexit`` and — because each child gets ``PR_SET_PDEATHSIG`` — the processes die
with the Python process even when it is killed outright. Nothing listens on anything but loopback
ports chosen free at start.

Fake nodes: ``gpu_nodes`` nodes with 8 ``nvidia.com/gpu`` each (label ``nvidia.com/gpu.present=true``,
``node.kubernetes.io/instance-type=gpu-a100x8``, taint ``nvidia.com/gpu=present:NoSchedule``) and
``cpu_nodes`` CPU-only nodes. kwok manages exactly the nodes annotated ``kwok.x-k8s.io/node=fake``;
its default stages make pods on them Running/Ready and complete pods owned by a Job.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

REPO = Path(__file__).resolve().parents[2]
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
WORKDIR_PREFIX = "tuneline-cp-"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_INSTANCE_TYPE = "gpu-a100x8"
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"

_live: "set[ControlPlane]" = set()
_live_lock = threading.Lock()


class ControlPlaneError(RuntimeError):
    """The control plane did not come up (the message carries the tail of every process log)."""


class KubectlError(RuntimeError):
    def __init__(self, args: Sequence[str], result: subprocess.CompletedProcess):
        self.result = result
        shown = " ".join(args) if len(args) <= 8 else " ".join([*args[:8], f"... ({len(args) - 8} more)"])
        super().__init__(f"kubectl {shown} exited {result.returncode}\n"
                         f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}")


def _versions() -> dict[str, str]:
    out = {}
    for line in (REPO / "hack" / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key] = value
    return out


def go_module_dir(module: str, version_key: str) -> Path:
    """Where ``go mod download`` put a module pinned in hack/versions.env."""
    cache = os.environ.get("GOMODCACHE")
    if not cache:
        try:
            cache = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True,
                                   check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            cache = str(Path(os.environ.get("GOPATH", Path.home() / "go")) / "pkg" / "mod")
    # the module cache writes upper-case letters as '!' + lower-case (github.com/!azure/...)
    escaped = "".join(f"!{c.lower()}" if c.isupper() else c for c in module)
    return Path(cache) / f"{escaped}@{_versions()[version_key]}"


def kwok_module_dir() -> Path:
    return go_module_dir("sigs.k8s.io/kwok", "KWOK_VERSION")


def reap_stale_workdirs() -> None:
    """Remove work directories left by a test process that was killed outright (its control-plane
    processes died with it through PR_SET_PDEATHSIG; only the directory stays behind)."""
    for d in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"):
        try:
            owner = int((d / "owner.pid").read_text())
        except (OSError, ValueError):
            continue  # not ours, or still being set up
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except PermissionError:
            pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort; stop()/atexit remain
        pass


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None


@dataclass
class NodeSpec:
    name: str
    gpus: int = 0
    cpu: str = "32"
    memory: str = "256Gi"
    pods: int = 110
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)

    def manifest(self) -> dict[str, Any]:
        capacity = {"cpu": self.cpu, "memory": self.memory, "pods": str(self.pods),
                    "ephemeral-storage": "1Ti"}
        labels = {"kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux",
                  "kubernetes.io/arch": "amd64", "type": "kwok", **self.labels}
        if self.gpus:
            capacity[GPU_RESOURCE] = str(self.gpus)
        return {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.name, "labels": labels,
                         "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"}},
            "spec": {"taints": self.taints},
            "status": {"capacity": capacity, "allocatable": dict(capacity),
                       "nodeInfo": {"kubeletVersion": "fake", "kubeProxyVersion": "fake",
                                    "operatingSystem": "linux", "architecture": "amd64"}},
        }


def default_nodes(gpu_nodes: int = 3, cpu_nodes: int = 1) -> list[NodeSpec]:
    nodes = [NodeSpec(f"gpu-node-{i}", gpus=8, cpu="96", memory="1Ti",
                      labels={"nvidia.com/gpu.present": "true",
                              "node.kubernetes.io/instance-type": GPU_INSTANCE_TYPE},
                      taints=[{"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}])
             for i in range(gpu_nodes)]
    nodes += [NodeSpec(f"cpu-node-{i}", cpu="16", memory="64Gi",
                       labels={"node.kubernetes.io/instance-type": "cpu-16"})
              for i in range(cpu_nodes)]
    return nodes


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok on loopback."""

    ADMIN_TOKEN_USER = "tuneline-test-admin"

    def __init__(self, bin_dir: str | os.PathLike, *, workdir: str | os.PathLike | None = None,
                 nodes: Iterable[NodeSpec] | None = None, controller_manager_args: Sequence[str] = (),
                 apiserver_args: Sequence[str] = (), keep_workdir: bool = False,
                 startup_timeout: float = 90.0, kwok_module: str | os.PathLike | None = None):
        self.bin_dir = Path(bin_dir)
        for b in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kubectl"):
            if not (self.bin_dir / b).is_file():
                raise ControlPlaneError(f"{self.bin_dir / b} is missing: run hack/build-controlplane.sh")
        self._own_workdir = workdir is None
        if self._own_workdir:
            reap_stale_workdirs()
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "owner.pid").write_text(str(os.getpid()))
        self.nodes = list(default_nodes() if nodes is None else nodes)
        self.controller_manager_args = list(controller_manager_args)
        self.apiserver_args = list(apiserver_args)
        self.keep_workdir = keep_workdir or os.environ.get("TUNELINE_KEEP_CONTROLPLANE") == "1"
        self.startup_timeout = startup_timeout
        self.kwok_module = Path(kwok_module) if kwok_module else kwok_module_dir()
        self.procs: list[_Proc] = []
        self.ports: dict[str, int] = {}
        self.admin_token = os.urandom(16).hex()
        self.kubeconfig = self.workdir / "kubeconfig"
        self.server = ""
        self.started_seconds: float | None = None
        self.apiserver_restarts = 0
        self._ssl: ssl.SSLContext | None = None
        self._stopped = False

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "ControlPlane":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "ControlPlane":
        t0 = time.monotonic()
        deadline = t0 + self.startup_timeout
        with _live_lock:
            _live.add(self)
        try:
            self._write_pki()
            self._start_etcd()
            self._wait(lambda: self._http_ok(f"http://127.0.0.1:{self.ports['etcd']}/health"),
                       deadline, "etcd /health")
            self._start_apiserver()
            self._wait(lambda: self._api_ok("/readyz"), deadline, "kube-apiserver /readyz")
            self._start_controller_manager()
            self._start_scheduler()
            self._start_kwok()
            self._create_nodes()
            self._wait(lambda: self._https_anon_ok(self.ports["kcm"]), deadline, "kube-controller-manager /healthz")
            self._wait(lambda: self._https_anon_ok(self.ports["scheduler"]), deadline, "kube-scheduler /healthz")
            self._wait(self._nodes_ready, deadline, "kwok nodes Ready and untainted")
            self._wait(lambda: self._api_ok("/api/v1/namespaces/default/serviceaccounts/default"), deadline,
                       "default ServiceAccount (controller-manager)")
        except BaseException as exc:
            report = self.log_tails()
            self.stop()
            if isinstance(exc, ControlPlaneError):
                raise ControlPlaneError(f"{exc}\n{report}") from None
            raise
        self.started_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Kill every process group and remove the work directory. Clients and kube-apiserver get
        SIGTERM first (kube-apiserver shuts down in about a second while etcd is still there, but
        hangs retrying once etcd is gone), then etcd; whatever outlives its grace period is killed."""
        if self._stopped:
            return
        self._stopped = True
        first = [p for p in self.procs if p.name != "etcd"]
        last = [p for p in self.procs if p.name == "etcd"]
        for group, grace in ((first, 5.0), (last, 3.0)):
            for p in group:
                if p.alive():
                    _killpg(p.popen.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            for p in group:
                try:
                    p.popen.wait(timeout=max(0.05, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
            for p in group:
                _killpg(p.popen.pid, signal.SIGKILL)  # also reaps anything left in the group
                try:
                    p.popen.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        with _live_lock:
            _live.discard(self)
        if self._own_workdir and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------------ user-facing helpers
    def restart_apiserver(self, *, sig: int = signal.SIGTERM, grace_seconds: float = 10.0,
                          down_seconds: float = 0.0, timeout: float = 90.0) -> float:
        """Stop kube-apiserver (``sig``: SIGTERM is a graceful shutdown — it stops listening at once, then
        drains, and is killed if still there after ``grace_seconds``, as a kubelet would; SIGKILL is a
        crash), leave it down for ``down_seconds``, start it again on the same port with the same
        certificates, flags and etcd data, and wait for /readyz. Returns the seconds it was unreachable.
        Clients (controller-manager, scheduler, kwok, the operator) keep their kubeconfigs: they must
        reconnect on their own."""
        proc = next(p for p in self.procs if p.name == "kube-apiserver")
        t0 = time.monotonic()
        _killpg(proc.popen.pid, sig)
        try:
            proc.popen.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            _killpg(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait(timeout=10)
        self.procs.remove(proc)
        with open(proc.log, "ab") as fh:
            fh.write(f"\n===== stopped with signal {sig}, exit {proc.popen.returncode}; restarting =====\n".encode())
        time.sleep(down_seconds)
        deadline = time.monotonic() + timeout
        # the old listener may linger for a moment: retry the bind until the port is free again
        while True:
            self._start_apiserver(port=self.ports["apiserver"])
            try:
                self._wait(lambda: self._api_ok("/readyz"), deadline, "kube-apiserver /readyz after a restart")
                break
            except ControlPlaneError:
                failed = self.procs.pop()
                if failed.alive() or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        self.apiserver_restarts += 1
        return time.monotonic() - t0

    @property
    def env(self) -> dict[str, str]:
        """os.environ with KUBECONFIG pointing here and the control-plane binaries first on PATH."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess:
        """Run the real kubectl against this control plane (text mode)."""
        result = subprocess.run([str(self.bin_dir / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
                                input=input, capture_output=True, text=True, timeout=timeout, env=self.env)
        if check and result.returncode != 0:
            raise KubectlError(args, result)
        return result

    def apply(self, manifest: str | dict | list, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """kubectl apply -f - for YAML text, an object, or a list of objects."""
        if not isinstance(manifest, str):
            docs = manifest if isinstance(manifest, list) else [manifest]
            manifest = "\n---\n".join(json.dumps(d) for d in docs)
        return self.kubectl("apply", "-f", "-", *args, input=manifest, check=check)

    def create_namespace(self, name: str, *, wait_for_service_account: bool = True,
                         timeout: float = 30) -> str:
        self.kubectl("create", "namespace", name)
        if wait_for_service_account:
            self._wait(lambda: self._api_ok(f"/api/v1/namespaces/{name}/serviceaccounts/default"),
                       time.monotonic() + timeout, f"default ServiceAccount in {name}")
        return name

    def api_client(self):
        """A ``kubernetes.client.ApiClient`` for this control plane."""
        from kubernetes import config  # imported lazily: the module is optional for callers

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def log_path(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    def log_tails(self, lines: int = 40) -> str:
        out = []
        for p in self.procs:
            state = "running" if p.alive() else f"exited {p.popen.returncode}"
            try:
                tail = p.log.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                tail = []
            out.append(f"===== {p.name} ({state}) {p.log}\n" + "\n".join(tail))
        return "\n".join(out)

    # ------------------------------------------------------------------ processes
    def _spawn(self, name: str, args: list[str]) -> _Proc:
        log = self.log_path(name)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as fh:
            popen = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=self.workdir, start_new_session=True, preexec_fn=_set_pdeathsig,
                                     env={**os.environ, "KUBECONFIG": str(self.kubeconfig)})
        proc = _Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self.ports.update(etcd=client, etcd_peer=peer)
        self._spawn("etcd", [
            str(self.bin_dir / "etcd"), "--name", "default",
            "--data-dir", str(self.workdir / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{client}",
            "--advertise-client-urls", f"http://127.0.0.1:{client}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"default=http://127.0.0.1:{peer}",
            "--listen-metrics-urls", f"http://127.0.0.1:{free_port()}",
            "--unsafe-no-fsync", "--log-level", "warn",
        ])

    def _start_apiserver(self, port: int | None = None) -> None:
        port = port or free_port()
        self.ports["apiserver"] = port
        self.server = f"https://127.0.0.1:{port}"
        pki = self.workdir / "pki"
        self._write_kubeconfigs()
        self._spawn("kube-apiserver", [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--secure-port={port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.key'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--token-auth-file={pki / 'tokens.csv'}",
            "--enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultTolerationSeconds,"
            "DefaultStorageClass,StorageObjectInUseProtection,PersistentVolumeClaimResize,Priority,"
            "RuntimeClass,NodeRestriction,PodSecurity,MutatingAdmissionWebhook,ValidatingAdmissionPolicy,"
            "ValidatingAdmissionWebhook,ResourceQuota",
            "--enable-aggregator-routing=true",
            "--allow-privileged=true",
            "--profiling=false",
            "--v=1",
            *self.apiserver_args,
        ])

    def _start_controller_manager(self) -> None:
        port = free_port()
        self.ports["kcm"] = port
        pki = self.workdir / "pki"
        self._spawn("kube-controller-manager", [
            str(self.bin_dir / "kube-controller-manager"),
            f"--kubeconfig={self.workdir / 'kcm.kubeconfig'}",
            "--controllers=*",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            "--use-service-account-credentials=true",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            "--leader-elect=false",
            f"--secure-port={port}", "--bind-address=127.0.0.1",
            f"--cert-dir={self.workdir / 'kcm-certs'}",
            # tests want quick reactions; defaults are tuned for large clusters
            "--horizontal-pod-autoscaler-sync-period=5s",
            "--node-monitor-grace-period=60s",
            "--profiling=false", "--v=1",
            *self.controller_manager_args,
        ])

    def _start_scheduler(self) -> None:
        port = free_port()
        self.ports["scheduler"] = port
        self._spawn("kube-scheduler", [
            str(self.bin_dir / "kube-scheduler"),
            f"--kubeconfig={self.workdir / 'scheduler.kubeconfig'}",
            "--leader-elect=false",
            f"--secure-port={port}", "--bind-address=127.0.0.1",
            f"--cert-dir={self.workdir / 'scheduler-certs'}",
            "--profiling=false", "--v=1",
        ])

    def _start_kwok(self) -> None:
        port = free_port()
        self.ports["kwok"] = port
        # standalone kwok has no built-in stages (kwokctl adds them): write the defaults kwokctl uses —
        # node-initialize + heartbeat-with-lease, pod-ready / pod-complete (Job pods) / pod-delete —
        # taken from the kwok module itself
        stage_root = self.kwok_module / "kustomize" / "stage"
        stages = [stage_root / "node" / "fast" / "node-initialize.yaml",
                  stage_root / "node" / "heartbeat-with-lease" / "node-heartbeat-with-lease.yaml",
                  stage_root / "pod" / "fast" / "pod-ready.yaml",
                  stage_root / "pod" / "fast" / "pod-complete.yaml",
                  stage_root / "pod" / "fast" / "pod-delete.yaml"]
        missing = [str(s) for s in stages if not s.is_file()]
        if missing:
            raise ControlPlaneError("kwok stage files not found (run hack/build-controlplane.sh): " + ", ".join(missing))
        config = self.workdir / "kwok.yaml"
        # (no KwokConfiguration document: kwok then defaults its options itself; an explicit --config
        # also keeps ~/.kwok/kwok.yaml out)
        config.write_text("\n---\n".join(s.read_text() for s in stages))
        self._spawn("kwok", [
            str(self.bin_dir / "kwok"),
            f"--config={config}",
            f"--kubeconfig={self.kubeconfig}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
            f"--cidr={POD_CIDR}",
            "--node-ip=10.240.0.1",
            "--node-lease-duration-seconds=40",
            f"--server-address=127.0.0.1:{port}",
        ])

    def _create_nodes(self) -> None:
        if self.nodes:
            self.apply([n.manifest() for n in self.nodes])

    # ------------------------------------------------------------------ files
    def _write_pki(self) -> None:
        pki = self.workdir / "pki"
        pki.mkdir(parents=True, exist_ok=True)

        def openssl(*args: str) -> None:
            r = subprocess.run(["openssl", *args], cwd=pki, capture_output=True, text=True)
            if r.returncode != 0:
                raise ControlPlaneError(f"openssl {' '.join(args)} failed:\n{r.stderr}")

        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
                "-subj", "/CN=tuneline-test-ca",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature")
        openssl("req", *ec, "-keyout", "apiserver.key", "-out", "apiserver.csr", "-subj", "/CN=kube-apiserver")
        (pki / "apiserver.ext").write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,"
            "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,"
            "DNS:kubernetes.default.svc.cluster.local\n")
        openssl("x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", "apiserver.crt", "-days", "2", "-extfile", "apiserver.ext")
        # service-account tokens are signed with RSA, as in a real cluster
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "sa.key")
        self._kcm_token, self._sched_token = os.urandom(16).hex(), os.urandom(16).hex()
        (pki / "tokens.csv").write_text(
            f'{self.admin_token},{self.ADMIN_TOKEN_USER},uid-admin,"system:masters"\n'
            f"{self._kcm_token},system:kube-controller-manager,uid-kcm\n"
            f"{self._sched_token},system:kube-scheduler,uid-scheduler\n")
        self._ssl = ssl.create_default_context(cafile=str(pki / "ca.crt"))

    def _write_kubeconfigs(self) -> None:
        ca = self.workdir / "pki" / "ca.crt"
        for path, user, token in ((self.kubeconfig, "admin", self.admin_token),
                                  (self.workdir / "kcm.kubeconfig", "kube-controller-manager", self._kcm_token),
                                  (self.workdir / "scheduler.kubeconfig", "kube-scheduler", self._sched_token)):
            config = {
                "apiVersion": "v1", "kind": "Config",
                "clusters": [{"name": "tuneline-test", "cluster": {"server": self.server,
                                                                   "certificate-authority": str(ca)}}],
                "users": [{"name": user, "user": {"token": token}}],
                "contexts": [{"name": "tuneline-test", "context": {"cluster": "tuneline-test", "user": user,
                                                                   "namespace": "default"}}],
                "current-context": "tuneline-test",
            }
            path.write_text(json.dumps(config, indent=1))
            path.chmod(0o600)

    # ------------------------------------------------------------------ readiness
    def _wait(self, probe, deadline: float, what: str, interval: float = 0.2) -> None:
        while True:
            for p in self.procs:
                if not p.alive():
                    raise ControlPlaneError(f"{p.name} exited with {p.popen.returncode} while waiting for {what}")
            try:
                if probe():
                    return
            except Exception:  # noqa: BLE001 - not ready yet
                pass
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"timed out after {self.startup_timeout:.0f} s waiting for {what}")
            time.sleep(interval)

    @staticmethod
    def _http_ok(url: str) -> bool:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200

    def _api_get(self, path: str) -> Any:
        req = urllib.request.Request(self.server + path, headers={"Authorization": f"Bearer {self.admin_token}"})
        with urllib.request.urlopen(req, timeout=5, context=self._ssl) as r:
            return json.loads(r.read() or b"null") if r.headers.get_content_type() == "application/json" else r.read()

    def _api_ok(self, path: str) -> bool:
        try:
            self._api_get(path)
            return True
        except urllib.error.URLError:
            return False

    @staticmethod
    def _https_anon_ok(port: int) -> bool:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", timeout=2, context=ctx) as r:
                return r.status == 200
        except urllib.error.URLError:
            return False

    def _nodes_ready(self) -> bool:
        want = {n.name for n in self.nodes}
        ready = set()
        for node in self._api_get("/api/v1/nodes")["items"]:
            conditions = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
            taints = [t for t in node.get("spec", {}).get("taints", []) or []
                      if t["key"].startswith("node.kubernetes.io/")]
            if conditions.get("Ready") == "True" and not taints:
                ready.add(node["metadata"]["name"])
        return want <= ready


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@atexit.register
def _stop_all() -> None:
    with _live_lock:
        live = list(_live)
    for cp in live:
        cp.stop()
