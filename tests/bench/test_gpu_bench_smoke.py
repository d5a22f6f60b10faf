"""benchmarks/gpu_lora_efficiency.py runs end to end on a CPU (--smoke), writes each row as it
finishes, survives any error in a row, its Qwen2.5 configurations have the public models'
parameter counts, and step 4's "On a GPU" cell finds what it writes."""
from __future__ import annotations

import json
import statistics

import pytest
import torch

from benchmarks import gpu_lora_efficiency as bench
from course import REPO_ROOT, gpu_results

# Total and non-embedding parameters from the Qwen2.5 model cards (non-embedding excludes the
# input embedding and, for the untied 7B, the LM head).
PUBLIC = {"0.5B": (494_032_768, 0.36e9), "1.5B": (1_543_714_304, 1.31e9),
          "3B": (3_085_938_688, 2.77e9), "7B": (7_615_616_512, 6.53e9)}


@pytest.mark.parametrize("size", list(PUBLIC))
def test_qwen25_configs_have_the_public_parameter_counts(size):
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(bench.qwen_config(size))
    total = sum(p.numel() for p in model.parameters())
    embeddings = model.model.embed_tokens.weight.numel()
    if not model.config.tie_word_embeddings:
        embeddings += model.lm_head.weight.numel()
    assert total == PUBLIC[size][0]
    assert round((total - embeddings) / 1e9, 2) == PUBLIC[size][1] / 1e9


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu") / "cpu-smoke"
    report = bench.main(["--smoke", "--out", str(out), "--peak-tflops", "1", "--no-progress"])
    return out, report


def test_smoke_run_writes_rows_json_and_plot(smoke):
    out, report = smoke
    assert json.loads((out / "sweep.json").read_text()) == json.loads(json.dumps(report))
    rows = [json.loads(line) for line in (out / "sweep.jsonl").read_text().splitlines()]
    assert rows == report["results"] and len(rows) == 4 and report["complete"]
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["largest_fitting"] == {"full": "tiny-b", "lora": "tiny-b"}
    assert report["bf16_update_stall"]["changed_fp32_master"] > 0.99
    by = {(r["size"], r["method"]): r for r in rows}
    for size in ("tiny-a", "tiny-b"):
        full, lora = by[size, "full"], by[size, "lora"]
        assert full["recipe"]["precision"] == "mixed" and lora["recipe"]["lora_dropout"] == 0.0
        assert full["trainable"] == full["parameters"]
        assert 0 < lora["trainable"] == lora["lora_parameters"] < full["trainable"] / 5
        for r in (full, lora):
            assert r["tokens_per_s"] > 0 and r["peak_memory_bytes"] is None  # CUDA only
            assert r["step_time_s"] == statistics.median(r["step_times_s"][1:])  # step 1 out
            assert r["mfu"] == pytest.approx(r["flops"]["matmul"] / r["step_time_s"] / 1e12)
            assert r["predicted_gib"] > 0
            assert all(torch.isfinite(torch.tensor([r["loss_first"], r["loss_last"]])))


def test_the_step4_notebook_cell_finds_the_results(smoke):
    out, report = smoke
    [found] = gpu_results.find(out.parent)
    assert found.folder == out and found.sweep["results"] == report["results"]
    assert "largest that trains" in found.summary()
    source = (REPO_ROOT / "solutions" / "step4_lora" / "tutorial.py").read_text()
    cell = source[source.index("### On a GPU"):source.index("# %% [markdown] checklist")]
    assert "gpu_results.find()" in cell
    assert gpu_results.device_dir("NVIDIA H100 80GB HBM3").name == "nvidia-h100-80gb-hbm3"


def test_any_error_in_a_row_is_recorded_and_the_sweep_goes_on(monkeypatch):
    args = bench.parse_args(["--smoke", "--no-progress"])
    written = []

    def fake_measure(size, method, args, device):
        if method == "full" and size == "tiny-a":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if method == "lora" and size == "tiny-a":
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return {"size": size, "method": method, "fits": True,
                "parameters": {"tiny-a": 1, "tiny-b": 2}[size], "trainable": 1,
                "peak_memory_gib": None, "predicted_gib": 1.0, "step_time_s": 1.0,
                "tokens_per_s": 1.0, "mfu": None}

    monkeypatch.setattr(bench, "measure", fake_measure)
    results = bench.run_all(args, torch.device("cpu"), on_row=written.append)
    assert written == results  # each row handed over as it finished
    rows = {(r["size"], r["method"]): r for r in results}
    assert rows["tiny-a", "full"]["out_of_memory"] and not rows["tiny-a", "full"]["fits"]
    assert rows["tiny-b", "full"]["skipped"] == "a smaller size did not fit"
    assert "illegal memory access" in rows["tiny-a", "lora"]["error"]
    assert rows["tiny-b", "lora"]["fits"]  # a non-OOM error does not skip larger sizes
    assert bench.largest_fitting(results, ["full", "lora"]) == {"full": None, "lora": "tiny-b"}


def test_bad_arguments_are_rejected():
    with pytest.raises(SystemExit):
        bench.parse_args(["--sizes", "13B"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--methods", "qlora"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--steps", "1"])


def test_make_gpu_without_cuda_prints_the_predictions(capsys, monkeypatch):
    from benchmarks import gpu

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.main([]) == 0
    out = capsys.readouterr().out
    assert "No CUDA GPU here" in out and "predicted on CPU" in out and "| 7B | lora |" in out
