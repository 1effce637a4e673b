"""The ``tuneline`` command line.

Exit codes scripts can rely on: 0 success, 1 the work failed (training, export, a server),
2 bad input (a manifest, a dataset, an option), 130 interrupted.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from tuneline.local import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED
from tuneline.manifests import InvalidManifests, load_manifests

app = typer.Typer(
    name="tuneline",
    help="Fine-tune, export and serve language models from FineTuneJob / ModelDeployment manifests — "
         "on a Kubernetes cluster (the operator) or on this machine (tuneline run).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
console = Console(stderr=True, soft_wrap=True)  # error lines stay whole for grep and scripts


class OutputFormat(str, Enum):
    text = "text"
    json = "json"


FilesOption = Annotated[list[Path], typer.Option(
    "-f", "--filename", help="manifest file or directory (repeatable); the same YAML kubectl apply takes")]
OutputOption = Annotated[OutputFormat, typer.Option("-o", "--output", help="text for people, json for scripts")]


@app.command()
def validate(files: FilesOption, output: OutputOption = OutputFormat.text) -> None:
    """Check manifests against the same models the CRDs are generated from, without a cluster.

    Every error names the file, the YAML document (0-based) and the field. Exit code 2 when any
    manifest is invalid.
    """
    try:
        resources = load_manifests(files)
    except InvalidManifests as exc:
        if output is OutputFormat.json:
            print(json.dumps({"valid": False, "errors": [e.__dict__ for e in exc.errors]}, indent=2))
        else:
            for err in exc.errors:
                console.print(f"error: {err}", markup=False, highlight=False, style="red")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if not resources:
        message = _no_manifests(files)
        if output is OutputFormat.json:
            print(json.dumps({"valid": False, "errors": [{"file": ", ".join(map(str, files)), "document": 0,
                                                          "field": "", "message": message}]}, indent=2))
        else:
            console.print(f"error: {message}", markup=False, style="red")
        raise typer.Exit(EXIT_BAD_INPUT)
    if output is OutputFormat.json:
        print(json.dumps({"valid": True, "resources": [
            {"kind": r.kind, "name": r.metadata.name} for r in resources]}, indent=2))
        return
    table = Table("kind", "name", "summary", title="valid manifests")
    for r in resources:
        table.add_row(r.kind, r.metadata.name, _summary(r))
    Console().print(table)


def _summary(resource) -> str:
    spec = resource.spec
    if resource.kind == "FineTuneJob":
        return f"{spec.task}, {spec.method.type} on {spec.base_model.uri} → {spec.output.uri}"
    source = spec.model.from_fine_tune_job or spec.model.uri
    scaling = (f"autoscaling {spec.autoscaling.min_replicas}-{spec.autoscaling.max_replicas} on {spec.autoscaling.metric}"
               if spec.autoscaling else f"{spec.replicas or 1} replica(s)")
    return f"{spec.task} from {source}, {scaling}"


@app.command()
def crds(
    check: Annotated[bool, typer.Option(help="exit 1 when crds/ differs from the API models")] = False,
) -> None:
    """Regenerate crds/ from the API models (or check it is up to date)."""
    from tuneline.api.crdgen import main as crdgen_main

    raise typer.Exit(crdgen_main(["--check"] if check else []))


VolumeOption = Annotated[list[str], typer.Option(
    "--volume", "-v", help="map a pvc:// claim (or s3:// bucket) to a local directory: NAME=DIR (repeatable)")]
StateOption = Annotated[Path, typer.Option("--state-dir", envvar="TUNELINE_STATE_DIR",
                                           help="where local runs keep status, logs and running servers")]
DEFAULT_STATE = Path(".tuneline")


def _bad_input(output: OutputFormat, messages: list[str], errors: list[dict] | None = None) -> typer.Exit:
    """Say what is wrong (one JSON document on stdout with -o json, as a run's other outcomes) → the
    exit to raise."""
    if output is OutputFormat.json:
        print(json.dumps({"succeeded": False, "error": "; ".join(messages), "errors": errors or [], "results": []},
                         indent=2))
    else:
        for message in messages:
            console.print(f"error: {message}", markup=False, highlight=False, style="red")
    return typer.Exit(EXIT_BAD_INPUT)


def _volumes(pairs: list[str], state_dir: Path, output: OutputFormat = OutputFormat.text) -> dict[str, Path]:
    volumes = {"models": state_dir / "models"}
    for pair in pairs:
        name, sep, directory = pair.partition("=")
        if not sep or not name or not directory:
            raise _bad_input(output, [f"--volume {pair!r}: expected NAME=DIR"])
        volumes[name] = Path(directory).resolve()
    return volumes


def _no_manifests(files: list[Path]) -> str:
    return f"{', '.join(map(str, files))}: no FineTuneJob or ModelDeployment in these files"


def _load_or_exit(files: list[Path], output: OutputFormat = OutputFormat.text):
    try:
        resources = load_manifests(files)
    except InvalidManifests as exc:
        raise _bad_input(output, [str(err) for err in exc.errors], [err.__dict__ for err in exc.errors]) from None
    if not resources:
        raise _bad_input(output, [_no_manifests(files)])
    return resources


def _check_references_or_exit(resources, state, output: OutputFormat = OutputFormat.text) -> None:
    """A ModelDeployment's fromFineTuneJob must name a FineTuneJob of these files or one that succeeded
    here before: found out before any training, not after it."""
    from tuneline.controllers.finetunejob_logic import export_wanted

    jobs = {r.metadata.name: r for r in resources if r.kind == "FineTuneJob"}
    for r in resources:
        ref = r.kind == "ModelDeployment" and r.spec.model.from_fine_tune_job
        if ref and ref in jobs and not export_wanted(jobs[ref]):
            raise _bad_input(output, [f"ModelDeployment {r.metadata.name}: spec.model.fromFineTuneJob {ref!r} makes "
                                      "no model version to serve: its spec.export is disabled"])
        if ref and ref not in jobs and state.status("FineTuneJob", ref).get("phase") != "Succeeded":
            have = f"these files have {', '.join(sorted(jobs))}" if jobs else "these files have no FineTuneJob"
            raise _bad_input(output, [f"ModelDeployment {r.metadata.name}: spec.model.fromFineTuneJob {ref!r} is not "
                                      f"a FineTuneJob of these files ({have}) and has not succeeded in {state.root}"])


@app.command()
def run(
    files: FilesOption,
    volume: VolumeOption = [],  # noqa: B006 - typer needs a literal default
    state_dir: StateOption = DEFAULT_STATE,
    force: Annotated[bool, typer.Option(help="rerun FineTuneJobs that already succeeded with the same spec")] = False,
    port: Annotated[Optional[int], typer.Option(min=1, max=65535,
                                                help="gateway port for the (first) ModelDeployment")] = None,
    report: Annotated[bool, typer.Option(help="after serving, compare base and tuned model on held-out questions")] = False,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Run FineTuneJobs, then ModelDeployments, from the same manifests kubectl applies — on this machine.

    Training uses Ray locally (CPU workers, or local GPUs when present), then the evaluation gate,
    the export with its parity check, the Triton model repository; a ModelDeployment starts the
    real Triton server and the OpenAI-compatible gateway, which keep running until
    `tuneline stop`. A rerun skips jobs that already succeeded with the same spec, and an
    interrupted training resumes from its last checkpoint.
    """
    from tuneline.local.progress import RunProgress
    from tuneline.local.runner import (RunContext, StepFailed, run_finetunejob, run_modeldeployment,
                                       stop_signals_interrupt)
    from tuneline.local.state import LocalState

    resources = _load_or_exit(files, output)
    state = LocalState(state_dir.resolve())
    volumes = _volumes(volume, state_dir.resolve(), output)
    _check_references_or_exit(resources, state, output)
    results = []
    run_started = time.time()
    with RunProgress(console, enabled=output is OutputFormat.text) as progress, stop_signals_interrupt():
        ctx = RunContext(state=state, volumes=volumes, on_progress=progress.update, force=force)
        try:
            for resource in sorted(resources, key=lambda r: r.kind != "FineTuneJob"):
                progress.start(resource.kind, resource.metadata.name)
                if resource.kind == "FineTuneJob":
                    result = run_finetunejob(resource, ctx)
                else:
                    result = run_modeldeployment(resource, ctx, port=port)
                    port = None
                progress.done(resource.kind, resource.metadata.name, result)
                results.append({"kind": resource.kind, "name": resource.metadata.name, "status": result})
        except StepFailed as exc:
            progress.failed(str(exc))
            if output is OutputFormat.json:
                print(json.dumps({"succeeded": False, "error": str(exc), "results": results}, indent=2))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as interrupt:
            how = interrupt.args[0] if interrupt.args else "Ctrl-C"
            progress.failed(f"interrupted ({how}): checkpoints are kept; rerun the same command to resume")
            # only the servers this run was starting: earlier runs' deployments keep serving
            stopped = state.stop_processes(owners={f"{r.kind}/{r.metadata.name}" for r in resources},
                                           started_after=run_started)
            # and a deployment interrupted before it recorded a server says so too
            starting = [{"owner": f"{r.kind}/{r.metadata.name}"} for r in resources if r.kind == "ModelDeployment"
                        and state.status(r.kind, r.metadata.name).get("phase") == "Progressing"]
            _mark_stopped(state, stopped + starting, f"interrupted while starting ({how})")
            if output is OutputFormat.json:
                print(json.dumps({"succeeded": False, "error": "interrupted", "results": results}, indent=2))
            raise typer.Exit(EXIT_INTERRUPTED) from None
    if report:
        from tuneline.local.report import demo_report

        results.append({"kind": "Report", "name": "demo", "status": demo_report(resources, state, volumes, console)})
    if output is OutputFormat.json:
        print(json.dumps({"succeeded": True, "results": results}, indent=2))
    else:
        _print_statuses(state, _with_liveness(state, state.runs()))
        served = [r for r in results if r["kind"] == "ModelDeployment"]
        for r in served:
            console.print(f"[green]{r['name']}[/green] is served at {r['status'].get('url')} — try "
                          f"`tuneline chat {r['name']}` or `tuneline predict {r['name']} \"...\"`; "
                          f"`tuneline stop` stops it")


def _print_statuses(state, runs=None) -> None:
    from rich.table import Column

    # who and what are never cut short; the conditions (the True ones: Unknown says nothing), one a
    # line so that no word is split, and the message wrap instead. A terminal too narrow for both
    # (80 columns) leaves the conditions out: the message was folded a few letters a line
    out = Console()
    wide = out.width >= 110
    table = Table(*(Column(h, no_wrap=True) for h in ("kind", "name", "phase", "progress")),
                  *([Column("conditions", no_wrap=True)] if wide else []), Column("message", overflow="fold"),
                  title="status")
    for kind, name, status in state.runs() if runs is None else runs:
        conditions = "\n".join(f"{c.get('type')}" for c in status.get("conditions") or []
                                if isinstance(c, dict) and c.get("status") == "True")
        percent = (status.get("progress") or {}).get("percent")
        message = status.get("message") or status.get("url") or ""
        table.add_row(kind, name, status.get("phase", "-"), "" if percent is None else f"{percent}%",
                      *([conditions] if wide else []), message)
    out.print(table)


_IN_PROGRESS = ("Pending", "Training", "Evaluating", "Exporting")


def _with_liveness(state, runs):
    """A deployment recorded as Available whose gateway is no longer running is not available; a job
    recorded as in progress whose `tuneline run` is gone (killed, the terminal closed, the machine
    restarted) is not in progress."""
    from tuneline.local.state import alive

    gateways = {p["owner"] for p in state.processes() if p.get("role") == "gateway"}
    out = []
    for kind, name, status in runs:
        if kind == "ModelDeployment" and status.get("phase") == "Available" and f"{kind}/{name}" not in gateways:
            status = {**status, "phase": "NotRunning",
                      "message": "its gateway is not running (machine restarted, or killed): rerun `tuneline run -f ...`"}
        elif (kind == "FineTuneJob" and status.get("phase") in _IN_PROGRESS
              and isinstance(status.get("localRunner"), dict) and not alive(status["localRunner"])):
            status = {**status, "phase": "Failed", "reason": "Interrupted",
                      "message": f"its `tuneline run` stopped while {status['phase'].lower()} (killed, or the machine "
                                 "restarted); rerun `tuneline run -f <manifest>` to resume from the latest checkpoint"}
        out.append((kind, name, status))
    return out


@app.command()
def status(
    name: Annotated[Optional[str], typer.Argument(help="a FineTuneJob or ModelDeployment name; all when left out")] = None,
    state_dir: StateOption = DEFAULT_STATE,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Show the status of local runs: phase, progress, the conditions that hold, the message
    (-o json: the whole status, metrics and artifacts too)."""
    from tuneline.local.state import LocalState

    state = LocalState(state_dir.resolve())
    runs = _with_liveness(state, [r for r in state.runs() if name is None or r[1] == name])
    if name is not None and not runs:
        raise _bad_input(output, [f"no local run named {name!r} in {state_dir}"])
    if output is OutputFormat.json:
        print(json.dumps([{"kind": k, "name": n, "status": s} for k, n, s in runs], indent=2))
    else:
        _print_statuses(state, runs)


@app.command()
def logs(
    name: Annotated[str, typer.Argument(help="a FineTuneJob or ModelDeployment name")],
    component: Annotated[Optional[str], typer.Option("--component", "-c",
                                                     help="which log: train, triton, gateway, audit, …")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing as the log grows")] = False,
    state_dir: StateOption = DEFAULT_STATE,
) -> None:
    """Print the logs a local run wrote (training, export, Triton, gateway, audit)."""
    from tuneline.local.state import LocalState

    state = LocalState(state_dir.resolve())
    dirs = [d for d in (state.run_path(kind, name) for kind in ("FineTuneJob", "ModelDeployment")) if d.is_dir()]
    every = sorted(f for d in dirs for f in d.glob("*.log"))
    files = [f for f in every if component is None or f.stem == component]
    if not files:
        there = sorted({f.stem for f in every})
        console.print(f"error: no logs for {name!r}" + (f" (component {component})" if component else "")
                      + (f"; its logs: {', '.join(there)}" if there else ""), markup=False, style="red")
        raise typer.Exit(EXIT_BAD_INPUT)
    for f in files:
        if len(files) > 1:
            print(f"==> {f} <==")
        print(f.read_text(errors="replace"), end="")
    if follow:
        sizes = {f: f.stat().st_size for f in files}
        try:
            while True:
                for f in files:
                    size = f.stat().st_size
                    if size > sizes[f]:
                        with f.open("rb") as fh:
                            fh.seek(sizes[f])
                            sys.stdout.write(fh.read().decode(errors="replace"))
                            sys.stdout.flush()
                        sizes[f] = size
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass


@app.command()
def stop(
    name: Annotated[Optional[str], typer.Argument(help="a ModelDeployment name; all local servers when left out")] = None,
    state_dir: StateOption = DEFAULT_STATE,
) -> None:
    """Stop the servers `tuneline run` started (only those), and mark their deployments stopped."""
    from tuneline.local.state import LocalState

    state = LocalState(state_dir.resolve())
    if name is not None and not state.run_path("ModelDeployment", name).exists():
        # a typo must not read as success while the real server keeps running
        console.print(f"error: no local ModelDeployment named {name!r} in {state_dir}", markup=False, style="red")
        raise typer.Exit(EXIT_BAD_INPUT)
    stopped = state.stop_processes(owner=f"ModelDeployment/{name}" if name else None)
    _mark_stopped(state, stopped, "stopped by `tuneline stop`")
    console.print(f"stopped {len(stopped)} process(es)" + (f" of {name}" if name else ""))


def _mark_stopped(state, stopped: list[dict], why: str) -> None:
    """The deployments whose servers were stopped say so in their status."""
    from tuneline import status as st

    for owner in sorted({p["owner"] for p in stopped}):
        kind, _, dep = owner.partition("/")
        current = state.status(kind, dep)
        if current:
            current["phase"] = "Stopped"
            current["readyReplicas"] = 0
            current["message"] = why
            st.set_condition(current, st.AVAILABLE, "False", "Stopped", why, 1)
            state.save_status(kind, dep, current)


def _deployment_endpoint(name: str, state_dir: Path) -> tuple[str, dict[str, str], str]:
    """(gateway URL, headers with the API key, the model name the gateway serves)."""
    from tuneline.local.state import LocalState, read_json

    state = LocalState(state_dir.resolve())
    current = state.status("ModelDeployment", name)
    url = current.get("url")
    alive = [p for p in state.processes() if p["owner"] == f"ModelDeployment/{name}" and p["role"] == "gateway"]
    if not url or not alive:
        console.print(f"error: ModelDeployment {name!r} is not running here; start it with `tuneline run -f ...`",
                      markup=False, style="red")
        raise typer.Exit(EXIT_FAILED)
    spec = read_json(state.run_path("ModelDeployment", name) / "spec.json", {}).get("spec", {})
    # the gateway serves the model under its repository name: the FineTuneJob's, for fromFineTuneJob
    served_model = (spec.get("model") or {}).get("fromFineTuneJob") or name
    headers = {}
    ref = (spec.get("api") or {}).get("apiKeySecretRef")
    if ref:
        key = state.first_api_key(ref["name"], ref.get("key", "api-keys"))
        if key:
            headers["Authorization"] = f"Bearer {key}"
    return url, headers, served_model


@contextmanager
def _served(url: str):
    """An HTTP client of a local deployment; a gateway that cannot be reached is an error line, not a traceback."""
    import httpx

    try:
        with httpx.Client(base_url=url, timeout=300) as client:
            yield client
    except httpx.TransportError as exc:
        console.print(f"error: the gateway at {url} did not answer ({type(exc).__name__}: {exc}); "
                      "`tuneline status` shows whether it runs", markup=False, style="red")
        raise typer.Exit(EXIT_FAILED) from None


@app.command()
def chat(
    name: Annotated[str, typer.Argument(help="a running ModelDeployment (task chat)")],
    message: Annotated[Optional[str], typer.Option("--message", "-m", help="one-shot: ask this and exit")] = None,
    max_tokens: Annotated[int, typer.Option(help="longest answer, in tokens")] = 128,
    temperature: Annotated[float, typer.Option(help="0 = greedy")] = 0.0,
    system: Annotated[Optional[str], typer.Option(help="system prompt")] = None,
    state_dir: StateOption = DEFAULT_STATE,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Chat with a served model through its OpenAI-compatible API, streaming the answer token by token.

    Interactive without --message (empty line or Ctrl-D ends).
    """
    url, headers, served_model = _deployment_endpoint(name, state_dir)
    history: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []

    def ask(text: str) -> str:
        history.append({"role": "user", "content": text})
        body = {"model": served_model, "messages": history, "max_tokens": max_tokens, "temperature": temperature,
                "stream": True}
        answer = []
        with _served(url) as client, client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
            if r.status_code != 200:
                r.read()
                console.print(f"error: {r.status_code} {r.text}", markup=False, style="red")
                raise typer.Exit(EXIT_FAILED)
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if "error" in event:   # the gateway failed mid-answer (the model went away, say)
                    sys.stdout.write("\n")
                    console.print(f"error: {event['error'].get('message')}", markup=False, style="red")
                    raise typer.Exit(EXIT_FAILED)
                delta = (event.get("choices") or [{}])[0].get("delta", {}).get("content") or ""
                answer.append(delta)
                if output is OutputFormat.text:
                    sys.stdout.write(delta)
                    sys.stdout.flush()
        if output is OutputFormat.text:
            sys.stdout.write("\n")
        history.append({"role": "assistant", "content": "".join(answer)})
        return "".join(answer)

    if message is not None:
        answer = ask(message)
        if output is OutputFormat.json:
            print(json.dumps({"question": message, "answer": answer}))
        return
    while True:
        try:
            text = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            break
        if not text:
            break
        sys.stdout.write("model> ")
        ask(text)


@app.command()
def predict(
    name: Annotated[str, typer.Argument(help="a running ModelDeployment (task sequence-classification)")],
    texts: Annotated[list[str], typer.Argument(help="one or more texts to classify")],
    state_dir: StateOption = DEFAULT_STATE,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Classify texts with a served classifier (POST /v1/classify)."""
    url, headers, served_model = _deployment_endpoint(name, state_dir)
    with _served(url) as client:
        r = client.post("/v1/classify", json={"model": served_model, "input": texts}, headers=headers)
    if r.status_code != 200:
        console.print(f"error: {r.status_code} {r.text}", markup=False, style="red")
        raise typer.Exit(EXIT_FAILED)
    data = r.json()
    if output is OutputFormat.json:
        print(json.dumps(data, indent=2))
        return
    table = Table("text", "label", "score")
    for text, item in zip(texts, data["data"]):
        table.add_row(text, item["label"], f"{item['score']:.3f}")
    Console().print(table)


# --- a real cluster: apply / get ---------------------------------------------------------------------

KubeconfigOption = Annotated[Optional[str], typer.Option(
    "--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)", show_default=False)]
ContextOption = Annotated[Optional[str], typer.Option(
    "--context", help="kubeconfig context to use (default: its current context)", show_default=False)]
NamespaceOption = Annotated[Optional[str], typer.Option(
    "-n", "--namespace", help="namespace (default: the context's namespace, else 'default')", show_default=False)]


class DryRun(str, Enum):
    none = "none"
    server = "server"


class GetOutput(str, Enum):
    text = "text"
    wide = "wide"
    json = "json"
    yaml = "yaml"
    name = "name"


def _error(message: str) -> None:
    console.print(f"error: {message}", markup=False, highlight=False, style="red")


def _connect(kubeconfig: Optional[str], context: Optional[str]):
    from tuneline import cluster

    try:
        return cluster.connect(kubeconfig, context)
    except cluster.ConfigError as exc:
        _error(str(exc))
        raise typer.Exit(EXIT_BAD_INPUT if exc.bad_input else EXIT_FAILED) from None


def _unreachable(exc, kube) -> None:
    where = f" (kubeconfig context {kube.context!r})" if kube.context else ""
    _error(f"{exc}{where}")
    raise typer.Exit(EXIT_FAILED) from None


@app.command()
def apply(
    files: FilesOption,
    namespace: NamespaceOption = None,
    dry_run: Annotated[DryRun, typer.Option(
        "--dry-run", help="server: the API server validates and admits each object (CEL rules included) but "
                          "stores nothing (`tuneline validate` is the offline check)")] = DryRun.none,
    force_conflicts: Annotated[bool, typer.Option(
        "--force-conflicts", help="take over fields another field manager owns instead of failing")] = False,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Create or update FineTuneJobs and ModelDeployments on the cluster of your kubeconfig (server-side apply).

    Every document is first validated locally exactly as `tuneline validate` does (errors name the
    file, the document and the field; exit 2, and nothing is sent when any document is invalid).
    Then each one is server-side applied with field manager "tuneline-cli" and reported like
    kubectl: `finetunejob.tuneline.io/NAME created|configured|unchanged`. Objects the API server
    rejects (its CEL rules, immutable fields, conflicts) are printed with the server's message and
    the command exits 1 after trying the rest.

    Examples:

      tuneline apply -f examples/bank-assistant.yaml

      tuneline apply -f examples/ -n team-a --dry-run=server
    """
    from tuneline import cluster
    from tuneline.manifests import InvalidManifests, load_documents

    try:
        resources = load_manifests(files)
        docs = [doc for _, _, doc in load_documents(files)]
    except InvalidManifests as exc:
        if output is OutputFormat.json:
            print(json.dumps({"applied": False, "errors": [e.__dict__ for e in exc.errors]}, indent=2))
        else:
            for err in exc.errors:
                _error(str(err))
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if not resources:
        _error("no objects passed to apply: the files hold no FineTuneJob or ModelDeployment")
        raise typer.Exit(EXIT_BAD_INPUT)
    kube = _connect(kubeconfig, context)
    try:
        targets = [(doc, cluster.target_namespace(doc, namespace, kube.namespace)) for doc in docs]
    except ValueError as exc:
        _error(str(exc))
        raise typer.Exit(EXIT_BAD_INPUT) from None

    suffix = " (server dry run)" if dry_run is DryRun.server else ""
    results, failed = [], False
    for doc, ns in targets:
        rt = cluster.BY_KIND[doc["kind"]]
        name = doc["metadata"]["name"]
        ref = f"{rt.qualified}/{name}"
        entry = {"kind": rt.kind, "name": name, "namespace": ns}
        try:
            before = kube.get(rt, ns, name)
            after = kube.apply(doc, ns, dry_run=dry_run is DryRun.server, force=force_conflicts)
            verdict = cluster.apply_verdict(before, after)
        except cluster.Unreachable as exc:
            _unreachable(exc, kube)
        except cluster.ApiError as exc:
            failed = True
            message = cluster.server_message(exc)
            hint = " (rerun with --force-conflicts to take those fields over)" if exc.status == 409 else ""
            entry.update(error=message, reason=cluster.server_reason(exc), status=exc.status)
            results.append(entry)
            if output is OutputFormat.text:
                _error(f"{ref} (namespace {ns}) rejected by the API server "
                       f"({cluster.server_reason(exc)}): {message}{hint}")
            continue
        entry["result"] = verdict
        results.append(entry)
        if output is OutputFormat.text:
            print(f"{ref} {verdict}{suffix}", flush=True)
    if output is OutputFormat.json:
        print(json.dumps({"applied": not failed, "dryRun": dry_run.value, "results": results}, indent=2))
    if failed:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def get(
    resource: Annotated[Optional[str], typer.Argument(
        help="finetunejobs (ftj), modeldeployments (mdep) or all; TYPE/NAME works too", show_default=False,
        metavar="TYPE")] = None,
    name: Annotated[Optional[str], typer.Argument(help="one object's name; all when left out",
                                                  show_default=False, metavar="NAME")] = None,
    namespace: NamespaceOption = None,
    all_namespaces: Annotated[bool, typer.Option("-A", "--all-namespaces", help="list across all namespaces")] = False,
    selector: Annotated[Optional[str], typer.Option("-l", "--selector", help="label selector, e.g. team=a",
                                                    show_default=False)] = None,
    output: Annotated[GetOutput, typer.Option(
        "-o", "--output", help="text: the CRDs' printer columns (phase, progress, ready, age ...); wide adds "
                               "base model / URL; json or yaml: the objects; name: TYPE/NAME lines")] = GetOutput.text,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """Show FineTuneJobs and ModelDeployments on the cluster of your kubeconfig, like kubectl get.

    Exit 1 when NAME does not exist (or the cluster cannot be reached), 2 on a bad argument.

    Examples:

      tuneline get                          # both kinds in the current namespace

      tuneline get ftj bank-assistant -o yaml

      tuneline get mdep -A -o wide
    """
    from tuneline import cluster

    try:
        types, name = cluster.parse_get_args(resource, name)
    except ValueError as exc:
        _error(str(exc))
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if name and all_namespaces:
        _error("a NAME cannot be looked up with --all-namespaces; pass -n NAMESPACE")
        raise typer.Exit(EXIT_BAD_INPUT)
    kube = _connect(kubeconfig, context)
    ns = None if all_namespaces else (namespace or kube.namespace)
    structured = output in (GetOutput.json, GetOutput.yaml, GetOutput.name)
    found: list[tuple] = []  # (resource type, object or table)
    try:
        for rt in types:
            try:
                if structured:
                    objs = ([o] if (o := kube.get(rt, ns, name)) else []) if name else kube.list(rt, ns, selector)
                    found.extend((rt, o) for o in objs)
                else:
                    found.append((rt, kube.table(rt, ns, name, selector)))
            except cluster.ApiError as exc:
                if exc.status == 404 and not cluster.is_status_body(exc):
                    _error(f"the server has no resource type {rt.plural}.{cluster.GROUP} "
                           f"(are tuneline's CRDs installed? `kubectl apply -f crds/`)")
                    raise typer.Exit(EXIT_FAILED) from None
                if exc.status == 404 and name:
                    continue
                _error(f"{rt.plural}.{cluster.GROUP}: {cluster.server_message(exc)}")
                raise typer.Exit(EXIT_FAILED) from None
    except cluster.Unreachable as exc:
        _unreachable(exc, kube)

    where = "any namespace" if ns is None else f"namespace {ns!r}"
    if name and not found:
        what = types[0].qualified if len(types) == 1 else "FineTuneJob or ModelDeployment"
        _error(f"{what} {name!r} not found in {where}")
        raise typer.Exit(EXIT_FAILED)
    if output is GetOutput.name:
        for rt, obj in found:
            print(f"{rt.qualified}/{obj['metadata']['name']}")
        return
    if structured:
        objs = [cluster.without_managed_fields(o) for _, o in found]
        data = objs[0] if name and len(objs) == 1 else cluster.as_list(objs)
        if output is GetOutput.json:
            print(json.dumps(data, indent=4))
        else:
            import yaml

            print(yaml.safe_dump(data, sort_keys=False, default_flow_style=False), end="")
        return
    sections = []
    for rt, table in found:
        headers, rows = cluster.table_rows(table, rt, wide=output is GetOutput.wide,
                                           with_namespace=all_namespaces, qualify=len(types) > 1)
        if rows:
            sections.append(cluster.format_columns(headers, rows))
    if not sections:
        console.print(f"No resources found in {ns} namespace." if ns else "No resources found.", markup=False)
        return
    print("\n\n".join(sections))


def main() -> None:  # pragma: no cover - console entry point
    from tuneline.local.state import LocalStateError

    try:
        app()
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except LocalStateError as exc:
        console.print(f"error: {exc}", markup=False, style="red")
        sys.exit(EXIT_BAD_INPUT)


if __name__ == "__main__":  # pragma: no cover
    main()
