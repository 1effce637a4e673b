"""Argo CD health checks for FineTuneJob and ModelDeployment, run the way Argo CD runs them.

The scripts live in Argo CD's own ``resource_customizations`` layout under
``charts/tuneline/argocd/<group>/<kind>/`` (``health.lua``, ``health_test.yaml``,
``testdata/*.yaml``), so they can be proposed upstream unchanged. Each case is run by a Lua 5.1
interpreter (lupa; Argo CD embeds gopher-lua, also Lua 5.1) in a sandbox holding only what Argo
CD's sandbox offers a health script (no ``os``/``io``/``require``), with the object as the global
``obj``; the returned ``status`` and ``message`` must equal the expected ones.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

lupa = pytest.importorskip("lupa")
try:  # lupa >= 2 ships one module per Lua version
    from lupa import lua51 as lua_impl
except ImportError:  # pragma: no cover - older lupa: the default runtime
    lua_impl = lupa

REPO = Path(__file__).resolve().parents[2]
ARGOCD = REPO / "charts" / "tuneline" / "argocd"
KINDS = sorted(p.parent for p in ARGOCD.glob("*/*/health.lua"))
VALID = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


def new_runtime():
    lua = lua_impl.LuaRuntime(unpack_returned_tuples=True)
    version = lua.eval("_VERSION")
    assert version == "Lua 5.1", f"Argo CD runs health checks with Lua 5.1, got {version}"
    return lua


def run_health(lua, script: str, obj: dict) -> dict:
    chunk = lua.execute("return function(src) return loadstring(src, 'health.lua') end")(script)
    assert chunk is not None, "health.lua does not compile"
    env = lua.eval("{}")
    g = lua.globals()
    for name in ("ipairs", "pairs", "next", "type", "tostring", "tonumber", "select", "error", "pcall",
                 "unpack", "string", "table", "math"):
        env[name] = g[name]
    env["obj"] = lua.table_from(obj, recursive=True)
    g.setfenv(chunk, env)
    result = chunk()
    assert result is not None, "health.lua returned nothing"
    return {k: result[k] for k in ("status", "message") if result[k] is not None}


def cases():
    for kind_dir in KINDS:
        spec = yaml.safe_load((kind_dir / "health_test.yaml").read_text())
        for case in spec["tests"]:
            yield pytest.param(kind_dir, case, id=f"{kind_dir.name}-{Path(case['inputPath']).stem}")


def test_both_kinds_have_health_checks():
    assert {(p.parent.name, p.name) for p in KINDS} == {("tuneline.io", "FineTuneJob"),
                                                         ("tuneline.io", "ModelDeployment")}


@pytest.mark.parametrize("kind_dir,case", list(cases()))
def test_health_case(kind_dir: Path, case: dict):
    obj = yaml.safe_load((kind_dir / case["inputPath"]).read_text())
    assert obj["kind"] == kind_dir.name and obj["apiVersion"].startswith(kind_dir.parent.name + "/")
    got = run_health(new_runtime(), (kind_dir / "health.lua").read_text(), obj)
    assert got["status"] in VALID
    assert got == case["healthStatus"]


def test_every_testdata_file_is_a_case():
    for kind_dir in KINDS:
        listed = {c["inputPath"] for c in yaml.safe_load((kind_dir / "health_test.yaml").read_text())["tests"]}
        on_disk = {f"testdata/{p.name}" for p in (kind_dir / "testdata").glob("*.yaml")}
        assert listed == on_disk


@pytest.mark.parametrize("kind,expected", [
    ("FineTuneJob", {"Queued": "Suspended", "Failed": "Degraded", "Succeeded": "Healthy", "Training": "Progressing"}),
    ("ModelDeployment", {"Available": "Healthy", "Failed": "Degraded", "Degraded": "Degraded", "Progressing": "Progressing"}),
])
def test_phase_mapping_users_expect(kind, expected):
    """Every phase the API defines maps to a status Argo CD users expect (not only the test files)."""
    script = (ARGOCD / "tuneline.io" / kind / "health.lua").read_text()
    lua = new_runtime()
    for phase, status in expected.items():
        obj = {"kind": kind, "metadata": {"name": "x", "generation": 1},
               "status": {"phase": phase, "observedGeneration": 1}}
        assert run_health(lua, script, obj)["status"] == status, phase


def test_sandbox_has_no_os():
    lua = new_runtime()
    with pytest.raises(lua_impl.LuaError, match="os"):
        run_health(lua, "os.exit(1)", {"kind": "FineTuneJob"})
