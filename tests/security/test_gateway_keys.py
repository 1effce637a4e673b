"""The gateway's API keys: closed by default once keys are configured, compared in constant time.

Cluster-side security proofs are not here: PodSecurity ``restricted`` and least-privilege RBAC
(SubjectAccessReview) are proven in tests/integration/test_chart_installs_with_least_privilege.py
and by the integration tests that create pods in ``restricted`` namespaces. Hostile request
bodies, floods and key-logging checks per request are in
tests/badinput/test_gateway_hostile_requests.py.

What it tries:

- every ``/v1`` route (chat, classify, models, one model) without a key, with a wrong key, with
  a key of the right length, with a key differing in the last byte: 401 with
  ``WWW-Authenticate: Bearer``, the model never asked; the right key: 200;
- health and metrics stay open (kubelet probes and Prometheus carry no key);
- a key file that is empty, or all comments: every request refused (fail closed, not open);
- a key file rotated in place: the old key refused and the new one accepted after the recheck;
- the key check goes through ``hmac.compare_digest`` only (a recorder in its place sees every
  comparison; a compare that always says no locks out the right key), once per configured key
  whichever key matches (no early exit), with bytes on both sides;
- key-file errors name the line, never its content.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import json

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from tuneline_workloads.gateway import guardrails  # noqa: E402
from tuneline_workloads.gateway.app import Gateway, create_app  # noqa: E402
from tuneline_workloads.gateway.audit import AuditLog  # noqa: E402
from tuneline_workloads.gateway.config import GatewayConfig  # noqa: E402
from tuneline_workloads.gateway.guardrails import ApiKeys, KeyFileError, parse_key_file  # noqa: E402
from tests.support.triton_standin import ScriptedTriton  # noqa: E402

KEY = "sk-sec-0123456789abcdef0123"
KEYS = {"alice": KEY.encode(), "bob": b"sk-sec-bob-9876543210fedcba", "carol": b"sk-sec-carol-aaaaaaaaaaaaaaaa"}


def client_for(keys: ApiKeys, task: str = "chat"):
    backend, audit = ScriptedTriton(), io.StringIO()
    gw = Gateway(GatewayConfig(model="m", task=task), backend, keys, AuditLog(stream=audit))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(gw, manage_backend=False)),
                               base_url="http://gw")
    return client, backend, audit


ROUTES = [("chat", "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
          ("sequence-classification", "POST", "/v1/classify", {"input": "hi"}),
          ("chat", "GET", "/v1/models", None),
          ("chat", "GET", "/v1/models/m", None)]
BAD = [None, "Bearer sk-wrong", "Bearer " + "x" * len(KEY), "Bearer " + KEY[:-1] + "4", f"Token {KEY}",
       "Bearer " + KEY.upper()]


@pytest.mark.parametrize("task, method, path, body", ROUTES, ids=[r[2] for r in ROUTES])
def test_every_v1_route_needs_a_valid_key(task, method, path, body):
    async def go():
        client, backend, audit = client_for(ApiKeys(keys=KEYS), task)
        for auth in BAD:
            headers = {"Authorization": auth} if auth else {}
            r = await client.request(method, path, json=body, headers=headers)
            assert r.status_code == 401, (auth, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.json()["error"]["type"] == "authentication_error"
        assert backend.calls == 0
        r = await client.request(method, path, json=body, headers={"Authorization": f"Bearer {KEY}"})
        assert r.status_code == 200, r.text
        lines = [json.loads(line) for line in audit.getvalue().splitlines()]
        assert [a["status"] for a in lines] == [401] * len(BAD) + [200]
        assert [a["key_id"] for a in lines] == [None] * len(BAD) + ["alice"]
        assert all(k.decode() not in audit.getvalue() for k in KEYS.values())
    asyncio.run(go())


def test_probes_and_metrics_need_no_key():
    async def go():
        client, _, _ = client_for(ApiKeys(keys=KEYS))
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await client.get(path)).status_code == 200, path
    asyncio.run(go())


@pytest.mark.parametrize("text", ["", "\n\n", "# no keys yet\n"], ids=["empty", "blank", "comments-only"])
def test_a_key_file_with_no_keys_fails_closed(tmp_path, text):
    path = tmp_path / "api-keys"
    path.write_text(text)

    async def go():
        client, backend, _ = client_for(ApiKeys(path=path))
        for auth in (None, "Bearer anything", "Bearer "):
            r = await client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]},
                                  headers={"Authorization": auth} if auth else {})
            assert r.status_code == 401
        assert backend.calls == 0
    asyncio.run(go())


def test_a_rotated_key_file_locks_the_old_key_out(tmp_path):
    path = tmp_path / "api-keys"
    path.write_text(f"alice:{KEY}\n")
    now = [0.0]
    keys = ApiKeys(path=path, recheck_s=2.0, clock=lambda: now[0])
    assert keys.check(KEY) == "alice"
    path.write_text("alice:sk-sec-rotated-00000000000000\n")
    now[0] += 5
    assert keys.check(KEY) is None
    assert keys.check("sk-sec-rotated-00000000000000") == "alice"


@pytest.fixture
def recorded_compare(monkeypatch):
    calls: list[tuple[type, type]] = []
    real = hmac.compare_digest

    def recorder(a, b):
        calls.append((type(a), type(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recorder)
    assert guardrails.hmac.compare_digest is recorder  # the module the gateway uses
    return calls


@pytest.mark.parametrize("presented, found", [(KEY, "alice"), ("sk-sec-carol-aaaaaaaaaaaaaaaa", "carol"),
                                              ("sk-wrong", None), ("x" * 10_000, None)],
                         ids=["first-key", "last-key", "wrong", "huge"])
def test_key_check_compares_every_key_in_constant_time(recorded_compare, presented, found):
    keys = ApiKeys(keys=KEYS)
    assert keys.check(presented) == found
    # one constant-time comparison per configured key, whichever matched: no early exit
    assert len(recorded_compare) == len(KEYS)
    assert all(types == (bytes, bytes) for types in recorded_compare)


def test_key_check_relies_on_compare_digest_alone(monkeypatch):
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: False)
    assert ApiKeys(keys=KEYS).check(KEY) is None  # no == shortcut behind it

    async def go():
        client, _, _ = client_for(ApiKeys(keys=KEYS))
        r = await client.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"})
        assert r.status_code == 401
    asyncio.run(go())


def test_gateway_requests_go_through_compare_digest(recorded_compare):
    async def go():
        client, _, _ = client_for(ApiKeys(keys=KEYS))
        await client.get("/v1/models", headers={"Authorization": "Bearer sk-wrong"})
        await client.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    asyncio.run(go())
    assert len(recorded_compare) == 2 * len(KEYS)


@pytest.mark.parametrize("text", [f"{KEY}\n", f"alice:{KEY}\nalice:{KEY}x\n", f"bad id!:{KEY}\n", f":{KEY}\n"],
                         ids=["no-id", "duplicate-id", "bad-id", "empty-id"])
def test_key_file_errors_never_show_the_key(text):
    with pytest.raises(KeyFileError) as err:
        parse_key_file(text, "/etc/tuneline/api-keys")
    assert "line" in str(err.value)
    assert KEY not in str(err.value)
