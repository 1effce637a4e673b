"""A fault-injecting HTTPS reverse proxy in front of the test control plane's kube-apiserver.

    proxy = FaultProxy(cp, seed=7, rates=FaultRates(conflict=0.1, throttle=0.1, error=0.1, watch_cut=0.8))
    proxy.start()
    kubeconfig = proxy.write_kubeconfig(tmp_path / "via-proxy.kubeconfig")   # give this to the operator
    ...
    proxy.counts        # Counter: faults injected, by kind
    proxy.stop()

It terminates TLS with a certificate signed by the control plane's own CA (so a client's kubeconfig
keeps verifying the server), forwards every request — bearer token included — to kube-apiserver over
TLS, and streams responses back (watches included). Faults, drawn from a seeded ``random.Random``:

* ``conflict``: a write (POST/PUT/PATCH/DELETE) answered ``409 Conflict`` (a ``Status`` with reason
  ``Conflict``, as kube-apiserver words it for a stale resourceVersion) — not forwarded.
* ``throttle``: ``429 Too Many Requests`` with ``Retry-After: 1`` (API Priority and Fairness'
  answer) — not forwarded.
* ``error``: ``500 Internal Server Error`` — not forwarded.
* ``lost_response``: the request *is* forwarded and applied, then the client gets a 500 instead of
  the answer (a connection lost after the commit): a retried create must not duplicate anything.
* ``watch_cut``: a watch (``?watch=true``) is forwarded and, after a random 0.3–3 s, its connection
  is cut mid-stream (TCP abort, no terminating chunk).

The proxy runs its own asyncio loop (aiohttp server and client) in a daemon thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
import subprocess
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "host", "content-length"}
WRITES = {"POST", "PUT", "PATCH", "DELETE"}
KINDS = ("conflict", "throttle", "error", "lost_response", "watch_cut")


@dataclass
class FaultRates:
    conflict: float = 0.0       # share of writes answered 409
    throttle: float = 0.0       # share of requests answered 429
    error: float = 0.0          # share of requests answered 500
    lost_response: float = 0.0  # share of writes applied, then answered 500
    watch_cut: float = 0.0      # share of watches cut mid-stream
    watch_cut_after: tuple[float, float] = (0.3, 3.0)


def _status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> bytes:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}
    if details:
        body["details"] = details
    return json.dumps(body).encode()


class FaultProxy:
    def __init__(self, cp, seed: int, rates: FaultRates, workdir: Path | None = None):
        self.cp = cp
        self.rng = random.Random(seed)
        self.rates = rates
        self.workdir = Path(workdir or cp.workdir)
        self.enabled = True
        self.counts: Counter = Counter()      # faults injected, by kind
        self.requests: Counter = Counter()    # requests seen: "watch" / "other"
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._error: BaseException | None = None

    # ------------------------------------------------------------------ set-up
    def _server_ssl(self) -> ssl.SSLContext:
        pki = self.cp.workdir / "pki"
        key, csr, crt, ext = (self.workdir / f"fault-proxy.{s}" for s in ("key", "csr", "crt", "ext"))
        ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                       "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
        for args in (["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                      "-keyout", str(key), "-out", str(csr), "-subj", "/CN=tuneline-fault-proxy"],
                     ["x509", "-req", "-in", str(csr), "-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"),
                      "-CAcreateserial", "-CAserial", str(self.workdir / "fault-proxy.srl"), "-out", str(crt),
                      "-days", "1", "-extfile", str(ext)]):
            subprocess.run(["openssl", *args], check=True, capture_output=True)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(crt), str(key))
        return ctx

    def start(self) -> "FaultProxy":
        server_ssl = self._server_ssl()
        self._thread = threading.Thread(target=self._run, args=(server_ssl,), name="fault-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"fault proxy did not start: {self._error!r}")
        return self

    def _run(self, server_ssl: ssl.SSLContext) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve(server_ssl))
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, server_ssl: ssl.SSLContext) -> None:
        upstream_ssl = ssl.create_default_context(cafile=str(self.cp.workdir / "pki" / "ca.crt"))
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=upstream_ssl, limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10), auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=server_ssl)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 - port 0: ask the socket
        logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def write_kubeconfig(self, path: Path) -> Path:
        """The control plane's admin kubeconfig, pointing at the proxy."""
        config = json.loads(Path(self.cp.kubeconfig).read_text())
        for cluster in config["clusters"]:
            cluster["cluster"]["server"] = self.url
        path.write_text(json.dumps(config, indent=1))
        path.chmod(0o600)
        return path

    def stop(self) -> None:
        if self._loop is None:
            return

        async def close() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
            if self._session is not None:
                await self._session.close()

        try:
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=15)
        except Exception:  # noqa: BLE001 - best effort at teardown
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def summary(self) -> str:
        return (", ".join(f"{k} {self.counts[k]}" for k in KINDS)
                + f" (of {self.requests['other']} requests and {self.requests['watch']} watches)")

    # ------------------------------------------------------------------ the proxy
    def _draw(self, method: str, watch: bool) -> str | None:
        r = self.rates
        if not self.enabled:
            return None
        if self.rng.random() < r.throttle:
            return "throttle"
        if self.rng.random() < r.error:
            return "error"
        if method in WRITES:
            if self.rng.random() < r.conflict:
                return "conflict"
            if self.rng.random() < r.lost_response:
                return "lost_response"
        if watch and self.rng.random() < r.watch_cut:
            return "watch_cut"
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        watch = request.query.get("watch") in ("true", "1")
        self.requests["watch" if watch else "other"] += 1
        fault = self._draw(request.method, watch)
        if fault == "throttle":
            self.counts[fault] += 1
            return web.Response(status=429, body=_status(429, "TooManyRequests", "injected: too many requests, "
                                                         "please try again later", {"retryAfterSeconds": 1}),
                                headers={"Retry-After": "1"}, content_type="application/json")
        if fault == "error":
            self.counts[fault] += 1
            return web.Response(status=500, body=_status(500, "InternalError", "injected: internal error"),
                                content_type="application/json")
        if fault == "conflict":
            self.counts[fault] += 1
            return web.Response(status=409, body=_status(
                409, "Conflict", "injected: Operation cannot be fulfilled: the object has been modified; "
                                 "please apply your changes to the latest version and try again"),
                content_type="application/json")

        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream_url = f"{self.cp.server}{request.rel_url}"
        try:
            upstream = await self._session.request(request.method, upstream_url, headers=headers,
                                                   data=body or None, allow_redirects=False)
        except aiohttp.ClientError as exc:
            return web.Response(status=502, body=_status(502, "BadGateway", f"proxy: {exc}"),
                                content_type="application/json")
        out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
        if fault == "lost_response":
            await upstream.read()
            upstream.release()
            self.counts[fault] += 1
            return web.Response(status=500, body=_status(500, "InternalError", "injected: response lost"),
                                content_type="application/json")
        if not watch:
            data = await upstream.read()
            upstream.release()
            return web.Response(status=upstream.status, body=data, headers=out_headers)

        resp = web.StreamResponse(status=upstream.status, headers=out_headers)
        await resp.prepare(request)
        cut_handle = None
        if fault == "watch_cut":
            def cut() -> None:
                self.counts["watch_cut"] += 1
                if request.transport is not None:
                    request.transport.abort()
                upstream.close()
            cut_handle = asyncio.get_running_loop().call_later(self.rng.uniform(*self.rates.watch_cut_after), cut)
        try:
            async for chunk in upstream.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
        except (aiohttp.ClientError, ConnectionError, asyncio.CancelledError, RuntimeError):
            pass
        finally:
            if cut_handle is not None:
                cut_handle.cancel()
            upstream.close()
        return resp
