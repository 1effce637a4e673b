"""Every pod the chart runs meets the restricted Pod Security Standard (the integration test then
proves it on a real API server with PodSecurity enforcing ``restricted``)."""

from __future__ import annotations

import pytest

from chart_helpers import MODES, helm_bin, pod_specs, pss_restricted_violations, render

pytestmark = pytest.mark.skipif(helm_bin() is None, reason="helm not built yet: run hack/build-controlplane.sh")


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_pod_is_restricted(mode):
    pods = pod_specs(render(MODES[mode]))
    assert pods, "the chart runs at least the operator"
    for name, spec in pods:
        assert pss_restricted_violations(spec) == [], name
        for c in spec["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]


def test_checker_catches_violations():
    """The checker itself is not a rubber stamp."""
    ok = pod_specs(render())[0][1]
    bad = {**ok, "hostNetwork": True, "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
           "containers": [{**ok["containers"][0], "securityContext": {"privileged": True}}]}
    problems = " ".join(pss_restricted_violations(bad))
    for word in ("hostNetwork", "hostPath", "privileged", "allowPrivilegeEscalation", "capabilities"):
        assert word in problems
