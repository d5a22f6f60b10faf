"""The GPU check: everything a session lent a CUDA GPU should run, as is, in at most 8 minutes.

    PYTHONPATH=. python benchmarks/gpu_check.py --out "$OUT"     # on the GPU machine
    PYTHONPATH=. python benchmarks/gpu_check.py --dry-run --out /tmp/x   # CPU, tiny, ~20 s

Each step runs in its own process with its own time box (a hung or crashed step costs only its
box), in this order:

    env         torch, CUDA, the card (nvidia-smi)
    flash       FlashAttention runs for the benchmark's attention shape; pure bf16's update
                stall vs fp32 master weights, on the card
    row_05b     Qwen2.5-0.5B, full and LoRA: measured peak vs prediction (target: within 10 %),
                MFU (target for full fine-tuning on an H100: >= 40 %)
    flops       FlopCounterMode on CUDA (FlashAttention counted) vs course.flops.step_flops
    sweep       1.5B, 3B, 7B, full and LoRA (rows kept as they finish)
    compile     0.5B full fine-tuning with torch.compile (vs row_05b without)
    comparison  the embedded model's full vs LoRA comparison, a short budget (needs `datasets`)
    run_sft     step 3's run_sft.py on one process, then on 2 with torchrun where there are 2 GPUs

Writes to --out (at most 5 files): gpu_check.json (every step's status, seconds, result and the
checks against the targets), gpu_check.log (every step's output), results.tar.gz (the results
laid out as benchmarks/results/gpu/<device>/..., to unpack at the repository root), and the
sweep's sweep.json / sweep.png for a first look. Imports neither `datasets` nor `trl`; the two
steps that need the course's data (comparison, run_sft) are skipped, saying why, where
`datasets` is missing, and any step that fails, fails alone, with the reason in the JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO_ROOT = Path(__file__).resolve().parent.parent
BUDGET_S = 480                     # the whole check
RESERVE_S = 15                     # kept for packing the results
# (name, time box in seconds on a GPU, in a dry run)
STEPS: list[tuple[str, int, int]] = [
    ("env", 20, 20), ("flash", 30, 30), ("row_05b", 80, 60), ("flops", 40, 60),
    ("sweep", 130, 60), ("compile", 60, 60), ("comparison", 50, 10), ("run_sft", 35, 10),
]
MEMORY_TOL = 0.10                  # measured peak vs prediction
MFU_TARGET = 0.40                  # full fine-tuning, 0.5B, H100


# --- the steps (each runs in a child process: python -m benchmarks.gpu_check --step NAME) -------
def step_env(work: Path, dry: bool) -> dict[str, Any]:
    import platform

    import torch

    out: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version(),
                           "cuda_available": torch.cuda.is_available(),
                           "device_count": torch.cuda.device_count()}
    if torch.cuda.is_available():
        out["device"] = torch.cuda.get_device_name(0)
        out["memory_gib"] = torch.cuda.get_device_properties(0).total_memory / 2**30
        out["cuda"] = torch.version.cuda
    smi = shutil.which("nvidia-smi")
    if smi:
        out["nvidia_smi"] = subprocess.run([smi], capture_output=True, text=True,
                                           timeout=10).stdout[-3000:]
    for name in ("transformers", "peft", "datasets", "matplotlib"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            out[name] = None
    return out


def step_flash(work: Path, dry: bool) -> dict[str, Any]:
    import torch

    from course.recipe import bf16_update_stall, flash_attention_check, qwen_config

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    out = {"bf16_update_stall": bf16_update_stall(device=device, n=20_000 if dry else 200_000)}
    if cuda:
        out["flash_attention"] = flash_attention_check(qwen_config("0.5B"), 2, 2048, device)
        out["flash_attention_7b"] = flash_attention_check(qwen_config("7B"), 2, 2048, device)
    else:
        out["flash_attention"] = {"skipped": "no CUDA"}
    return out


def _sweep(work: Path, folder: str, argv: list[str]) -> dict[str, Any]:
    from benchmarks import gpu_lora_efficiency as bench

    report = bench.main([*argv, "--out", str(work / folder), "--no-progress"])
    return {"rows": report["results"], "largest_fitting": report["largest_fitting"],
            "device": report["device"]["name"], "flash_attention": report["flash_attention"]}


def step_row_05b(work: Path, dry: bool) -> dict[str, Any]:
    argv = ["--smoke", "--sizes", "tiny-a"] if dry else ["--sizes", "0.5B", "--steps", "8"]
    out = _sweep(work, "device", argv)
    checks = {}
    for r in out["rows"]:
        if r.get("fits") and r.get("peak_over_predicted") is not None:
            checks[f"{r['method']}_peak_within_{MEMORY_TOL:.0%}"] = \
                abs(r["peak_over_predicted"] - 1) <= MEMORY_TOL
        if r.get("fits") and r["method"] == "full" and r.get("mfu") is not None:
            checks[f"full_mfu_at_least_{MFU_TARGET:.0%}"] = r["mfu"] >= MFU_TARGET
    out["checks"] = checks
    return out


def step_flops(work: Path, dry: bool) -> dict[str, Any]:
    import torch

    from course import flops
    from course.grading import load_reference
    from course.recipe import Recipe, qwen_config

    cuda = torch.cuda.is_available()
    size, batch, seq = ("tiny-a", 2, 64) if dry else ("0.5B", 1, 2048)
    inject = load_reference("step4_lora", "lora_exercise").inject_lora
    out = {}
    for method in ("full", "lora"):
        recipe = Recipe(method, lora_r=4 if dry else 64)
        config = qwen_config(size)
        counted = flops.count_step_flops(config, recipe, batch, seq, inject_lora=inject,
                                         device="cuda" if cuda else "cpu", fake=not cuda)
        analytic = flops.step_flops(config, recipe, batch, seq)
        out[method] = {"counted": {k: v for k, v in counted.items() if k != "ops"},
                       "ops": counted["ops"], "analytic": analytic,
                       "matmul_ratio": counted["matmul"] / analytic["matmul"],
                       "attention_ratio": (counted["attention"] / analytic["attention"]
                                           if counted["attention"] else None)}
    out["checks"] = {f"{m}_matmul_within_1%": abs(out[m]["matmul_ratio"] - 1) <= 0.01
                     for m in ("full", "lora")}
    return out


def step_sweep(work: Path, dry: bool) -> dict[str, Any]:
    argv = ["--smoke", "--sizes", "tiny-b"] if dry else ["--sizes", "1.5B,3B,7B", "--steps", "5"]
    return _sweep(work, "device", [*argv, "--append"])  # after row_05b's rows


def step_compile(work: Path, dry: bool) -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA (compiling on a CPU takes minutes)"}
    return _sweep(work, "compile", ["--sizes", "0.5B", "--methods", "full", "--steps", "8",
                                    "--compile"])


def _without_datasets() -> dict[str, str] | None:
    """{"skipped": why} where the `datasets` package (the course's data loader) is missing."""
    import importlib.util

    if importlib.util.find_spec("datasets") is None:
        return {"skipped": "the `datasets` package is not installed here (the course's data "
                           "loader needs it: pip install datasets)"}
    return None


def step_comparison(work: Path, dry: bool) -> dict[str, Any]:
    if dry:
        return {"skipped": "dry run (needs the data and minutes)"}
    if (missing := _without_datasets()) is not None:
        return missing
    from benchmarks import full_vs_lora

    result = full_vs_lora.main(["--steps", "100", "--n-test", "200", "--ranks",
                                "--out", str(work / "device"), "--prefix", "full_vs_lora"])
    return {"table": result.table(), "seconds": result.seconds}


def step_run_sft(work: Path, dry: bool) -> dict[str, Any]:
    if dry:
        return {"skipped": "dry run (needs the data and minutes)"}
    if (missing := _without_datasets()) is not None:
        return missing
    import torch

    script = REPO_ROOT / "solutions" / "step3_sft" / "run_sft.py"
    common = ["--max-steps", "20", "--eval-every", "10", "--sample-every", "0",
              "--val-limit", "64"]
    out: dict[str, Any] = {}
    one = subprocess.run([sys.executable, str(script), *common, "--output-dir",
                          str(work / "sft1")], capture_output=True, text=True, timeout=20)
    out["one_process"] = {"rc": one.returncode, "tail": (one.stdout + one.stderr)[-1500:]}
    if torch.cuda.device_count() >= 2:
        two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                              "--nproc_per_node", "2", str(script), *common, "--batch-size",
                              "8", "--output-dir", str(work / "sft2")],
                             capture_output=True, text=True, timeout=12)
        out["two_processes"] = {"rc": two.returncode, "tail": (two.stdout + two.stderr)[-1500:]}
    else:
        out["two_processes"] = {"skipped": f"{torch.cuda.device_count()} GPU(s): torchrun "
                                           "--nproc_per_node 2 needs 2"}
    out["checks"] = {"one_process_ok": one.returncode == 0}
    return out


STEP_FUNCTIONS: dict[str, Callable[[Path, bool], dict[str, Any]]] = {
    "env": step_env, "flash": step_flash, "row_05b": step_row_05b, "flops": step_flops,
    "sweep": step_sweep, "compile": step_compile, "comparison": step_comparison,
    "run_sft": step_run_sft,
}


# --- the driver ----------------------------------------------------------------------------------
def run_step(name: str, box: float, work: Path, dry: bool, log) -> dict[str, Any]:
    """Run one step in a child process within `box` seconds; its result or why there is none."""
    path = f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    env = {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "benchmarks.gpu_check", "--step", name, "--work", str(work)]
    if dry:
        cmd.append("--dry-run")
    start = time.perf_counter()
    log.write(f"\n===== {name} (box {box:.0f} s) =====\n")
    log.flush()
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                              timeout=box)
        status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    except subprocess.TimeoutExpired:
        status = f"timed out after {box:.0f} s"
    seconds = time.perf_counter() - start
    result_file = work / f"{name}.json"
    result = json.loads(result_file.read_text()) if result_file.exists() else None
    if result and "skipped" in result:
        status = "skipped"
    return {"status": status, "seconds": round(seconds, 1), "result": result}


def pack(work: Path, out: Path, report: dict[str, Any]) -> None:
    """results.tar.gz laid out as benchmarks/results/gpu/<device>/ (the sweep's rows and plot,
    the comparison, gpu_check.json; compile/ beside them), plus sweep.json and sweep.png."""
    from course.gpu_results import device_slug

    device = (report["steps"].get("env", {}).get("result") or {}).get("device") or "cpu-dry-run"
    root = Path("benchmarks") / "results" / "gpu" / device_slug(device)
    with tarfile.open(out / "results.tar.gz", "w:gz") as tar:
        if (work / "device").is_dir():
            tar.add(work / "device", arcname=str(root))
        if (work / "compile").is_dir():
            tar.add(work / "compile", arcname=str(root / "compile"))
        tar.add(out / "gpu_check.json", arcname=str(root / "gpu_check.json"))
    for name in ("sweep.json", "sweep.png"):
        if (work / "device" / name).exists():
            shutil.copy(work / "device" / name, out / name)


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "build/gpu_check")))
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, short boxes")
    p.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for the whole check")
    p.add_argument("--only", default=None, help="comma-separated step names")
    p.add_argument("--step", help=argparse.SUPPRESS)   # internal: run one step in this process
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.step:
        result = STEP_FUNCTIONS[args.step](args.work, args.dry_run)
        (args.work / f"{args.step}.json").write_text(json.dumps(result, indent=1, default=str))
        return None
    args.out.mkdir(parents=True, exist_ok=True)
    deadline = time.perf_counter() + args.budget
    steps = [s for s in STEPS if not args.only or s[0] in args.only.split(",")]
    report: dict[str, Any] = {"dry_run": args.dry_run, "budget_s": args.budget, "steps": {},
                              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp, \
            (args.out / "gpu_check.log").open("w") as log:
        work = Path(tmp)
        for name, box, dry_box in steps:
            left = deadline - time.perf_counter() - RESERVE_S
            if left < 5:
                report["steps"][name] = {"status": "not run: the budget is spent"}
                continue
            report["steps"][name] = run_step(name, min(dry_box if args.dry_run else box, left),
                                             work, args.dry_run, log)
            print(f"{name:<11} {report['steps'][name]['status']:<28} "
                  f"{report['steps'][name]['seconds']:6.1f} s", flush=True)
            (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
        report["checks"] = {f"{name}.{k}": v for name, s in report["steps"].items()
                            for k, v in ((s.get("result") or {}).get("checks") or {}).items()}
        report["seconds"] = round(args.budget - (deadline - time.perf_counter()), 1)
        (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
        pack(work, args.out, report)
    print(f"checks: {report['checks']}\nwrote {args.out}/gpu_check.json, gpu_check.log, "
          f"results.tar.gz ({report['seconds']:.0f} s)")
    return report


if __name__ == "__main__":
    main()
