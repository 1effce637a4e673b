"""FineTuneJob controller at scale on the real control plane: N FineTuneJobs applied at once →
seconds until every RayJob exists (and every job's status is written), reconcile latency p50/p99
from the operator's own Prometheus histogram, and the operator's RSS.

    python -m benchmarks.bench_controlplane [--jobs 200] [--smoke]

KubeRay's controller does not run (no pods are made from the RayJobs): this measures tuneline's
side only — reading, deciding, creating five objects per job and writing the status.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import markdown_table, write_result  # noqa: E402


def _histogram_quantile(text: str, name: str, q: float) -> float | None:
    """Upper bound of the bucket holding quantile q (Prometheus histogram_quantile, no interpolation)."""
    buckets = []
    for m in re.finditer(rf'^{name}_bucket{{[^}}]*le="([^"]+)"[^}}]*}} ([0-9.e+]+)$', text, re.M):
        buckets.append((float("inf") if m.group(1) == "+Inf" else float(m.group(1)), float(m.group(2))))
    if not buckets:
        return None
    buckets.sort()
    total = buckets[-1][1]
    for bound, count in buckets:
        if count >= q * total:
            return bound
    return None


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    n = 10 if args.smoke else args.jobs

    from tests.support.controlplane_fixtures import locate_binaries, third_party_crd_files, tuneline_crd_files
    from tests.integration.operator_fixtures import OperatorProcess, finetunejob
    from tests.support.controlplane import ControlPlane
    from tuneline.controllers.kube import Kube

    with ControlPlane(locate_binaries()) as cp:
        tmp = Path(tempfile.mkdtemp(prefix="bench-cp-"))
        files = [*tuneline_crd_files(tmp), *third_party_crd_files()]
        cp.kubectl("apply", "--server-side", "--force-conflicts", *(a for f in files for a in ("-f", str(f))))
        cp.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        ns = cp.create_namespace("bench")
        op = OperatorProcess(cp, ns, tmp / "operator.log", {"TUNELINE_REQUEUE_SECONDS": "10"})
        op.start()
        k = Kube(cp.api_client())
        names = [f"job-{i:04d}" for i in range(n)]
        bodies = [finetunejob(name) for name in names]
        t0 = time.monotonic()
        # created at once through the API, as Argo CD or a script would (kubectl's client-side
        # throttle of 5 requests/s would make this a benchmark of kubectl)
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(lambda body: k.create(body, ns), bodies))
        applied = time.monotonic() - t0
        all_rayjobs = all_status = None
        while time.monotonic() - t0 < 600:
            have = len(k.list("ray.io/v1", "RayJob", ns))
            if all_rayjobs is None and have >= n:
                all_rayjobs = time.monotonic() - t0
            if all_rayjobs is not None:
                jobs = k.list("tuneline.io/v1alpha1", "FineTuneJob", ns)
                if all((j.get("status") or {}).get("attempts") == 1 for j in jobs):
                    all_status = time.monotonic() - t0
                    break
            time.sleep(0.25)
        metrics = op.metrics()
        rss = _rss_mib(op.proc.pid)
        dupes = n - len({r["metadata"]["name"] for r in k.list("ray.io/v1", "RayJob", ns)})
        op.stop()

    count = re.search(r'^tuneline_reconcile_duration_seconds_count{kind="FineTuneJob"} ([0-9.e+]+)$', metrics, re.M)
    row = {
        "jobs": n, "apply_s": round(applied, 2),
        "all_rayjobs_s": None if all_rayjobs is None else round(all_rayjobs, 2),
        "all_status_s": None if all_status is None else round(all_status, 2),
        "rayjobs_per_s": None if not all_rayjobs else round(n / all_rayjobs, 1),
        "reconciles": int(float(count.group(1))) if count else None,
        "reconcile_p50_s_le": _histogram_quantile(metrics, "tuneline_reconcile_duration_seconds", 0.5),
        "reconcile_p99_s_le": _histogram_quantile(metrics, "tuneline_reconcile_duration_seconds", 0.99),
        "operator_rss_mib": round(rss, 1), "duplicate_or_missing_rayjobs": dupes,
    }
    # absolute targets (issue 10), in the report's one table with the ratios
    targets = [
        {"name": f"{n} FineTuneJobs -> all RayJobs (s)", "ratio": row["all_rayjobs_s"], "target": "<= 30",
         "passed": row["all_rayjobs_s"] is not None and row["all_rayjobs_s"] <= 30 and dupes == 0,
         "detail": f"creation took {row['apply_s']} s; {dupes} duplicate or missing"},
        {"name": "reconcile p99 (s, histogram bucket bound)", "ratio": row["reconcile_p99_s_le"], "target": "<= 1",
         "passed": row["reconcile_p99_s_le"] is not None and row["reconcile_p99_s_le"] <= 1,
         "detail": f"p50 <= {row['reconcile_p50_s_le']} s over {row['reconciles']} reconciles"},
    ]
    md = ("## Control plane: FineTuneJobs created at once (16 parallel API clients)\n\n"
          "Real kube-apiserver/etcd on this machine, one operator process (kopf, standalone); KubeRay's "
          "controller not running. Reconcile quantiles are histogram bucket upper bounds.\n\n"
          + markdown_table([row], list(row)))
    write_result("controlplane", {"smoke": args.smoke, "rows": [row], "targets": targets}, md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
