"""The operator is SIGKILLed at 20 seeded random points while it reconciles FineTuneJobs, and
restarted each time: never a duplicate RayJob for an attempt, always the right final phase.

Simulated, and why: KubeRay's controller, the trainer and the exporter do not run here. A thread in
the test plays them (tests/chaos/kuberay_player.py): it moves each RayJob's status to RUNNING and then
to SUCCEEDED (or FAILED for the first attempt of the ``retry-*`` jobs), writes the metrics the
trainer would report before that, and, once kwok has completed an export Job's pod, writes the model
version the exporter would report. Everything else (API server, garbage collector, Job controller,
scheduler) is real.
"""

from __future__ import annotations

import random
import time

import pytest

from tests.chaos.kuberay_player import (EXPECTED, KubeRayAndWorkloadsPlayer, assert_final, rayjob_attempts,
                                        wait_all_terminal)
from tests.integration.operator_fixtures import finetunejob, operator, restricted_namespace, storage  # noqa: F401
from tuneline.controllers.kube import Kube

pytestmark = pytest.mark.controlplane
SEED = 20260101
KILLS = 20


def test_operator_killed_at_random_points_never_duplicates_and_finishes_right(control_plane, operator, storage):
    cp, ns = control_plane, operator.namespace
    k = Kube(cp.api_client())
    rng = random.Random(SEED)
    player = KubeRayAndWorkloadsPlayer(k, ns)
    player.start()
    names: list[str] = []
    operator.kill()
    t0 = time.monotonic()
    try:
        for round_ in range(KILLS):
            if round_ % 5 == 0:  # new jobs keep arriving, so kills land in every stage
                batch = [f"{kind}-{round_}" for kind in EXPECTED]
                names += batch
                cp.apply([finetunejob(n) for n in batch], "-n", ns)
            operator.start()
            time.sleep(rng.uniform(0.1, 1.5))
            operator.kill()
            for job, attempts in rayjob_attempts(k, ns).items():
                assert all(n == 1 for n in attempts.values()), (round_, job, attempts)
                assert len(attempts) <= EXPECTED[job.split("-")[0]][1], (round_, job, attempts)
        operator.start()
        wait_all_terminal(k, ns, names, timeout=120)
    finally:
        player.stop.set()
        player.join(timeout=5)
    elapsed = time.monotonic() - t0
    # right phase, one RayJob per attempt, one export Job per job that passed its gate
    assert_final(k, ns, names)
    print(f"\n{KILLS} SIGKILLs, {operator.starts} operator starts, {len(names)} jobs, {elapsed:.1f} s; "
          f"player errors (retried): {len(player.errors)}")
