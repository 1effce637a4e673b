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

import fcntl
import hashlib
import json
import os
import re
import secrets
import signal
import tempfile
import time
from contextlib import contextmanager
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
    """``path``'s JSON, or ``default`` when it is missing, unreadable or of another type than
    ``default`` (a hand-edited or truncated file must not crash a read-only command)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return default
    return data if default is None or isinstance(data, type(default)) else default


@contextmanager
def _locked(path: Path):
    """An exclusive lock beside ``path``: two `tuneline run`s must not lose each other's records."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class LocalStateError(ValueError):
    """The state directory cannot answer (a bad name, a damaged file); the message says what to do."""


_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")   # metadata.name (DNS subdomain): never a path


@dataclass(frozen=True)
class LocalState:
    root: Path

    def __post_init__(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise LocalStateError(f"the state directory {self.root} (--state-dir, TUNELINE_STATE_DIR) is a file, "
                                  "not a directory: name a directory, or leave it out for the default")

    def run_path(self, kind: str, name: str) -> Path:
        """Where a run's files are (not created). ``name`` is a Kubernetes object name."""
        if not _NAME.fullmatch(name or ""):
            raise LocalStateError(f"{name!r} is not a valid resource name (lowercase letters, digits, '-' and '.')")
        return self.root / "runs" / f"{kind.lower()}-{name}"

    def run_dir(self, kind: str, name: str) -> Path:
        path = self.run_path(kind, name)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def status(self, kind: str, name: str) -> dict[str, Any]:
        return read_json(self.run_path(kind, name) / "status.json", {})

    def save_status(self, kind: str, name: str, status: dict[str, Any]) -> None:
        write_json_atomic(self.run_dir(kind, name) / "status.json", status)

    def spec_digest(self, spec: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    def saved_spec_digest(self, kind: str, name: str) -> str | None:
        return read_json(self.run_path(kind, name) / "spec.json", {}).get("digest")

    def save_spec(self, kind: str, name: str, spec: dict[str, Any]) -> None:
        write_json_atomic(self.run_dir(kind, name) / "spec.json",
                          {"kind": kind, "name": name, "digest": self.spec_digest(spec), "spec": spec})

    def snapshot(self, kind: str, name: str) -> dict[str, Any]:
        """A run's saved spec and status as they are now, to put back with :meth:`restore`."""
        path = self.run_path(kind, name)
        return {"spec": read_json(path / "spec.json"), "status": read_json(path / "status.json")}

    def restore(self, kind: str, name: str, snapshot: dict[str, Any]) -> None:
        """Put back what :meth:`snapshot` saw: a rerun of a succeeded job rejected for bad input
        leaves the earlier run's record as it was (a record that did not exist then is removed)."""
        path = self.run_path(kind, name)
        for file, data in (("spec.json", snapshot["spec"]), ("status.json", snapshot["status"])):
            if data is None:
                (path / file).unlink(missing_ok=True)
            else:
                write_json_atomic(path / file, data)

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
        recorded = read_json(self.processes_file)
        if recorded is None and self.processes_file.exists():
            raise LocalStateError(f"{self.processes_file} is not readable JSON: the servers it recorded cannot "
                                  f"be found; stop them by hand (ps -ef | grep tritonserver) and delete the file")
        return [p for p in (recorded if isinstance(recorded, list) else []) if isinstance(p, dict) and alive(p)]

    def record_process(self, owner: str, role: str, pid: int, **info: Any) -> None:
        with _locked(self.processes_file):
            procs = [p for p in self.processes() if not (p["owner"] == owner and p["role"] == role)]
            procs.append({"owner": owner, "role": role, "pid": pid, "started": time.time(),
                          "startTicks": _start_ticks(pid), "cmdline": _cmdline(pid), **info})
            write_json_atomic(self.processes_file, procs)

    def stop_processes(self, owner: str | None = None, timeout: float = 15.0, *,
                       owners: set[str] | None = None, started_after: float | None = None) -> list[dict[str, Any]]:
        """SIGTERM (then SIGKILL) the process groups this state started; only those, and of them only
        ``owner``'s (or ``owners``'), started after ``started_after``, when given."""
        stopped, kept = [], []
        if not self.processes_file.exists():   # nothing was ever started here: nothing to create either
            return stopped
        with _locked(self.processes_file):
            for proc in self.processes():
                if ((owner is not None and proc["owner"] != owner)
                        or (owners is not None and proc["owner"] not in owners)
                        or (started_after is not None and proc.get("started", 0) < started_after)):
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


def this_process() -> dict[str, Any]:
    """This process as a record :func:`alive` can check later."""
    return {"pid": os.getpid(), "startTicks": _start_ticks(os.getpid())}


def alive(proc: dict[str, Any]) -> bool:
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
