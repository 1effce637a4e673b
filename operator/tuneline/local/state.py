"""The local runner's one directory: status, logs, reports and the processes it started.

    .tuneline/
      runs/<kind>-<name>/status.json     the status the operator would write (phase, conditions, …)
      runs/<kind>-<name>/spec.json       the spec that produced it (a changed spec reruns)
      runs/<kind>-<name>/*.log           logs of each step and server
      processes.json                     servers started by `tuneline run`, stopped by `tuneline stop`
      secrets/<name>/<key>               local stand-ins for Kubernetes Secrets (API keys)
      models/                            default volume for pvc://models
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=False)
    os.replace(tmp, path)


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return default


@dataclass(frozen=True)
class LocalState:
    root: Path

    def run_dir(self, kind: str, name: str) -> Path:
        path = self.root / "runs" / f"{kind.lower()}-{name}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def status(self, kind: str, name: str) -> dict[str, Any]:
        return read_json(self.run_dir(kind, name) / "status.json", {})

    def save_status(self, kind: str, name: str, status: dict[str, Any]) -> None:
        write_json_atomic(self.run_dir(kind, name) / "status.json", status)

    def spec_digest(self, spec: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    def saved_spec_digest(self, kind: str, name: str) -> str | None:
        return (read_json(self.run_dir(kind, name) / "spec.json", {}) or {}).get("digest")

    def save_spec(self, kind: str, name: str, spec: dict[str, Any]) -> None:
        write_json_atomic(self.run_dir(kind, name) / "spec.json",
                          {"kind": kind, "name": name, "digest": self.spec_digest(spec), "spec": spec})

    def log_path(self, kind: str, name: str, what: str) -> Path:
        return self.run_dir(kind, name) / f"{what}.log"

    def runs(self) -> list[tuple[str, str, dict[str, Any]]]:
        out = []
        for d in sorted((self.root / "runs").glob("*-*")) if (self.root / "runs").exists() else []:
            meta = read_json(d / "spec.json", {}) or {}
            kind = meta.get("kind") or d.name.split("-", 1)[0]
            name = meta.get("name") or d.name.split("-", 1)[1]
            out.append((kind, name, read_json(d / "status.json", {})))
        return out

    # --- processes started by the runner -------------------------------------------------
    @property
    def processes_file(self) -> Path:
        return self.root / "processes.json"

    def processes(self) -> list[dict[str, Any]]:
        return [p for p in read_json(self.processes_file, []) if _alive(p)]

    def record_process(self, owner: str, role: str, pid: int, **info: Any) -> None:
        procs = [p for p in self.processes() if not (p["owner"] == owner and p["role"] == role)]
        procs.append({"owner": owner, "role": role, "pid": pid, "started": time.time(),
                      "startTicks": _start_ticks(pid), "cmdline": _cmdline(pid), **info})
        write_json_atomic(self.processes_file, procs)

    def stop_processes(self, owner: str | None = None, timeout: float = 15.0) -> list[dict[str, Any]]:
        """SIGTERM (then SIGKILL) the process groups this state started; only those."""
        stopped, kept = [], []
        for proc in self.processes():
            if owner is not None and proc["owner"] != owner:
                kept.append(proc)
                continue
            _terminate_group(proc["pid"], timeout)
            stopped.append(proc)
        write_json_atomic(self.processes_file, kept)
        return stopped

    # --- local stand-ins for Secrets -------------------------------------------------------
    def secret_file(self, name: str, key: str) -> Path:
        return self.root / "secrets" / name / key

    def ensure_api_key(self, name: str, key: str) -> tuple[Path, bool]:
        """The API-key file for a Secret reference; generated (one key, id `local`) when absent."""
        path = self.secret_file(name, key)
        if path.exists():
            return path, False
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"local:{secrets.token_urlsafe(24)}\n")
        path.chmod(0o600)
        return path, True

    def first_api_key(self, name: str, key: str) -> str | None:
        path = self.secret_file(name, key)
        if not path.exists():
            return None
        for line in path.read_text().splitlines():
            if ":" in line:
                return line.split(":", 1)[1].strip()
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> int | None:
    """When the process started (clock ticks since boot): unlike its command line, this does not
    change when a freshly forked child execs, so it identifies the process we started."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _alive(proc: dict[str, Any]) -> bool:
    """Alive and still the process we started (pids are reused)."""
    ticks = _start_ticks(proc["pid"])
    return ticks is not None and ticks == proc.get("startTicks", ticks)


def _terminate_group(pid: int, timeout: float) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
