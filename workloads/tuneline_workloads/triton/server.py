"""Starting the real Triton Inference Server on this machine.

The server binary and its Python backend come from the ``nvidia-pytriton`` wheel, unpacked by
``hack/setup-python.sh`` into ``.venv-serve/triton``. Models import from the serving environment
(``.venv-serve``, numpy<2), which must be the active one when ``tritonserver`` starts; its
``libpython`` goes first on ``LD_LIBRARY_PATH`` so the backend stub binds the right interpreter.
In a cluster the NVIDIA Triton image is used instead and none of this applies.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import urllib.error
import urllib.request

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_SERVE_ENV = Path(os.environ.get("TUNELINE_SERVE_ENV", REPO_ROOT / ".venv-serve"))


class TritonError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_python_info(serve_env: Path) -> tuple[str, str]:
    """(X.Y version, LIBDIR) of the serving interpreter."""
    out = subprocess.run(
        [str(serve_env / "bin" / "python"), "-c",
         "import sys, sysconfig; print(f'{sys.version_info[0]}.{sys.version_info[1]}'); "
         "print(sysconfig.get_config_var('LIBDIR'))"],
        check=True, capture_output=True, text=True).stdout.split()
    return out[0], out[1]


def backend_directory(serve_env: Path = DEFAULT_SERVE_ENV) -> Path:
    """A backends/ directory whose python/ holds the stub built for the serving interpreter."""
    triton = serve_env / "triton"
    version, _ = _serve_python_info(serve_env)
    target = triton / f"backends-py{version}"
    python_dir = target / "python"
    stub = python_dir / "triton_python_backend_stub"
    if not stub.exists():
        source_stub = triton / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not source_stub.exists():
            raise TritonError(f"the Triton wheel has no Python backend stub for Python {version}")
        # assembled aside and renamed into place: two servers starting at once never see half of it
        staging = Path(tempfile.mkdtemp(dir=triton, prefix=".backends."))
        (staging / "python").mkdir()
        for item in (triton / "backends" / "python").iterdir():
            shutil.copy2(item, staging / "python" / item.name)
        shutil.copy2(source_stub, staging / "python" / "triton_python_backend_stub")
        (staging / "python" / "triton_python_backend_stub").chmod(0o755)
        try:
            os.rename(staging, target)
        except OSError:                       # another process won the race
            shutil.rmtree(staging, ignore_errors=True)
        if not stub.exists():
            raise TritonError(f"could not prepare {python_dir}")
    return target


def server_environment(serve_env: Path = DEFAULT_SERVE_ENV) -> dict[str, str]:
    _, libdir = _serve_python_info(serve_env)
    triton = serve_env / "triton"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["VIRTUAL_ENV"] = str(serve_env)
    env["PATH"] = f"{serve_env / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    env["LD_LIBRARY_PATH"] = ":".join(
        [libdir, str(triton / "bundled-libs"), str(triton / "lib"), env.get("LD_LIBRARY_PATH", "")]).rstrip(":")
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2))))
    return env


@dataclass
class TritonServer:
    """A running ``tritonserver`` over ``repository`` (explicit model control).

    Use as a context manager, or call :meth:`start` / :meth:`stop`. Logs go to ``log_file``.
    """

    repository: Path
    models: list[str] = field(default_factory=list)  # loaded at start; more with load()
    http_port: int = 0
    grpc_port: int = 0
    metrics_port: int = 0
    log_file: Path | None = None
    serve_env: Path = DEFAULT_SERVE_ENV
    extra_args: list[str] = field(default_factory=list)
    exit_timeout_s: int = 5              # how long shutdown waits for in-flight requests
    process: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.http_port = self.http_port or free_port()
        self.grpc_port = self.grpc_port or free_port()
        self.metrics_port = self.metrics_port or free_port()

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def command(self) -> list[str]:
        binary = self.serve_env / "triton" / "bin" / "tritonserver"
        if not binary.exists():
            raise TritonError(f"{binary} not found: run hack/setup-python.sh")
        cmd = [str(binary), f"--model-repository={self.repository}",
               f"--backend-directory={backend_directory(self.serve_env)}",
               "--model-control-mode=explicit", f"--http-port={self.http_port}",
               f"--grpc-port={self.grpc_port}", f"--metrics-port={self.metrics_port}",
               "--allow-metrics=true", "--allow-gpu-metrics=false", "--exit-on-error=true",
               "--strict-readiness=true", "--log-verbose=0", f"--exit-timeout-secs={self.exit_timeout_s}"]
        cmd += [f"--load-model={m}" for m in self.models]
        return cmd + self.extra_args

    def start(self, timeout: float = 180.0) -> "TritonServer":
        log = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        self.process = subprocess.Popen(self.command(), env=server_environment(self.serve_env),
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_ready(timeout)
        return self

    def _get(self, path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}{path}", timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return 0

    def is_ready(self, model: str | None = None) -> bool:
        path = f"/v2/models/{model}/ready" if model else "/v2/health/ready"
        return self._get(path) == 200

    def wait_ready(self, timeout: float = 180.0, model: str | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise TritonError(f"tritonserver exited with {self.process.returncode}; log: {self.log_file}\n"
                                  + self.log_tail())
            if self.is_ready(model):
                return
            time.sleep(0.2)
        raise TritonError(f"tritonserver not ready after {timeout:.0f}s; log: {self.log_file}\n" + self.log_tail())

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_file or not Path(self.log_file).exists():
            return ""
        return "\n".join(Path(self.log_file).read_text(errors="replace").splitlines()[-lines:])

    def _post(self, path: str) -> None:
        req = urllib.request.Request(f"http://{self.http_url}{path}", data=b"{}", method="POST")
        try:
            with urllib.request.urlopen(req, timeout=600):
                pass
        except urllib.error.HTTPError as e:
            raise TritonError(f"POST {path}: {e.code} {e.read().decode(errors='replace')}") from e

    def load(self, model: str) -> None:
        """Load or reload ``model`` (Triton keeps serving the old instance until the new one is ready)."""
        self._post(f"/v2/repository/models/{model}/load")

    def unload(self, model: str) -> None:
        self._post(f"/v2/repository/models/{model}/unload")

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> "TritonServer":
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()
