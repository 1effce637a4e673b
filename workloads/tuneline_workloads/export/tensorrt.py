"""TensorRT engine builds: the plan (optimisation profile, ``trtexec`` command) and, on a GPU, the build.

The plan is a pure function of the settings and the ONNX model's inputs, so it is unit tested
on machines without a GPU. Building needs an NVIDIA GPU and ``trtexec``; where either is missing
the step is reported as skipped with the reason — an engine is never faked.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tuneline_workloads.export.settings import TensorRTSettings

ENGINE_FILE = "model.plan"


@dataclass(frozen=True)
class Profile:
    """One optimisation profile: per input, the (batch, sequence) shape at min / opt / max."""

    inputs: tuple[str, ...]
    min_shape: tuple[int, int]
    opt_shape: tuple[int, int]
    max_shape: tuple[int, int]

    def shapes(self, which: str) -> str:
        b, s = {"min": self.min_shape, "opt": self.opt_shape, "max": self.max_shape}[which]
        return ",".join(f"{name}:{b}x{s}" for name in self.inputs)


def optimisation_profile(settings: TensorRTSettings, inputs: list[str] | tuple[str, ...]) -> Profile:
    """Batch from min/opt/maxBatchSize; sequence 1 .. maxSequenceLength, optimised for half of it."""
    if not inputs:
        raise ValueError("a TensorRT profile needs the model's input names")
    max_seq = settings.max_sequence_length
    opt_seq = max(1, max_seq // 2)
    return Profile(tuple(inputs), (settings.min_batch_size, 1), (settings.opt_batch_size, opt_seq),
                   (settings.max_batch_size, max_seq))


def trtexec_command(onnx_path: Path, engine_path: Path, settings: TensorRTSettings,
                    inputs: list[str] | tuple[str, ...], *, trtexec: str = "trtexec",
                    calibration_cache: Path | None = None, workspace_mib: int = 4096) -> list[str]:
    """The ``trtexec`` command line that builds ``engine_path`` from ``onnx_path``."""
    profile = optimisation_profile(settings, inputs)
    cmd = [trtexec, f"--onnx={onnx_path}", f"--saveEngine={engine_path}",
           f"--minShapes={profile.shapes('min')}", f"--optShapes={profile.shapes('opt')}",
           f"--maxShapes={profile.shapes('max')}", f"--memPoolSize=workspace:{workspace_mib}M",
           "--skipInference"]
    if settings.precision == "fp16":
        cmd.append("--fp16")
    elif settings.precision == "int8":
        # int8 with fp16 fallback for layers TensorRT cannot quantise
        cmd += ["--int8", "--fp16"]
        if calibration_cache is not None:
            cmd.append(f"--calib={calibration_cache}")
    return cmd


def build_plan(onnx_path: Path, out_dir: Path, settings: TensorRTSettings, inputs: list[str],
               *, calibration_cache: Path | None = None) -> dict:
    """What the TensorRT step runs (recorded in the export report whether or not it runs)."""
    engine = out_dir / ENGINE_FILE
    cmd = trtexec_command(onnx_path, engine, settings, inputs, calibration_cache=calibration_cache)
    profile = optimisation_profile(settings, inputs)
    plan = {"precision": settings.precision, "engine": str(engine), "command": cmd,
            "commandLine": shlex.join(cmd),
            "profile": {"inputs": list(profile.inputs), "min": list(profile.min_shape),
                        "opt": list(profile.opt_shape), "max": list(profile.max_shape)},
            "settings": asdict(settings)}
    if settings.precision == "int8" and calibration_cache is None:
        plan["warning"] = ("int8 without a calibration cache: TensorRT uses placeholder dynamic ranges, and "
                           "the engine's outputs are not parity-checked (the ONNX file is); prefer fp16")
    return plan


def no_gpu_reason() -> str | None:
    """None when an NVIDIA GPU is visible here, else why not."""
    if shutil.which("nvidia-smi") is None:
        return "no NVIDIA GPU on this machine (nvidia-smi not found)"
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"nvidia-smi failed: {exc}"
    if out.returncode != 0 or "GPU" not in out.stdout:
        return f"nvidia-smi lists no GPU (exit {out.returncode}): {out.stderr.strip()[:200]}"
    return None


def gpu_unavailable_reason() -> str | None:
    """None when an NVIDIA GPU and trtexec are usable here, else why not (for the report)."""
    reason = no_gpu_reason()
    if reason is not None:
        return reason
    if shutil.which("trtexec") is None:
        return "a GPU is present but trtexec (TensorRT) is not installed in this image"
    return None


def run_tensorrt(onnx_path: Path, out_dir: Path, settings: TensorRTSettings, inputs: list[str],
                 *, task: str) -> dict:
    """Build the engine when possible; otherwise return the plan with status Skipped and the reason."""
    plan = build_plan(onnx_path, out_dir, settings, inputs)
    if task != "sequence-classification":
        return {"status": "Skipped", "reason": "TensorRT engines are built for encoder (classifier) models; "
                "causal LMs are served by ONNX Runtime GenAI (TensorRT-LLM is out of scope)", "plan": plan}
    reason = gpu_unavailable_reason()
    if reason is not None:
        return {"status": "Skipped", "reason": reason, "plan": plan}
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    proc = subprocess.run(plan["command"], capture_output=True, text=True)
    (out_dir / "trtexec.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"trtexec failed (exit {proc.returncode}); log: {out_dir / 'trtexec.log'}\n"
                           + (proc.stderr or proc.stdout)[-2000:])
    engine = Path(plan["engine"])
    return {"status": "Built", "plan": plan, "seconds": round(time.monotonic() - started, 2),
            "sizeBytes": engine.stat().st_size}
