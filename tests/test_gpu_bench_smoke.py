"""benchmarks/gpu_lora_efficiency.py runs end to end on a CPU (--smoke), catches out-of-memory
errors, and its Qwen2.5 configurations have the public models' parameter counts."""
from __future__ import annotations

import json

import pytest
import torch

from benchmarks import gpu_lora_efficiency as bench

# Total and non-embedding parameters from the Qwen2.5 model cards (non-embedding excludes the
# input embedding and, for the untied 7B, the LM head).
PUBLIC = {"0.5B": (494_032_768, 0.36e9), "1.5B": (1_543_714_304, 1.31e9),
          "3B": (3_085_938_688, 2.77e9), "7B": (7_615_616_512, 6.53e9)}


@pytest.mark.parametrize("size", list(PUBLIC))
def test_qwen25_configs_have_the_public_parameter_counts(size):
    with torch.device("meta"):
        model = bench.AutoModelForCausalLM.from_config(bench.qwen_config(size))
    total = sum(p.numel() for p in model.parameters())
    embeddings = model.model.embed_tokens.weight.numel()
    if not model.config.tie_word_embeddings:
        embeddings += model.lm_head.weight.numel()
    assert total == PUBLIC[size][0]
    assert round((total - embeddings) / 1e9, 2) == PUBLIC[size][1] / 1e9


@pytest.mark.parametrize("impl", ["peft", "course"])
def test_smoke_run_writes_json_and_plot(tmp_path, impl):
    report = bench.main(["--smoke", "--out", str(tmp_path), "--lora-impl", impl,
                         "--peak-tflops", "1"])
    [json_path] = tmp_path.glob("gpu_lora_efficiency_cpu*.json")
    [png_path] = tmp_path.glob("gpu_lora_efficiency_cpu*.png")
    assert json.loads(json_path.read_text()) == json.loads(json.dumps(report))
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["date"] in json_path.name and report["device"]["name"].startswith("cpu")
    assert report["largest_fitting"] == {"full": "tiny-b", "lora": "tiny-b"}
    rows = {(r["size"], r["method"]): r for r in report["results"]}
    assert len(rows) == 4 and all(r["fits"] for r in rows.values())
    for size in ("tiny-a", "tiny-b"):
        full, lora = rows[size, "full"], rows[size, "lora"]
        assert full["trainable"] == full["parameters"]
        assert 0 < lora["trainable"] == lora["lora_parameters"] < full["trainable"] / 5
        assert full["flops_per_token"]["model"] == 6 * full["matmul_parameters"]
        assert lora["flops_per_token"]["model"] == \
            4 * lora["matmul_parameters"] + 6 * lora["lora_parameters"]
        for r in (full, lora):
            assert r["tokens_per_s"] > 0 and r["step_time_s"] > 0
            flops = r["flops_per_token"]["model"] * r["tokens_per_s"]
            assert r["mfu"] == pytest.approx(flops / 1e12)
            assert r["peak_memory_bytes"] is None  # CUDA only
            est = r["estimate_bytes"]
            assert est["total"] == sum(v for k, v in est.items() if k != "total")
            assert torch.isfinite(torch.tensor([r["loss_first"], r["loss_last"]])).all()
        assert lora["estimate_bytes"]["optimizer"] < full["estimate_bytes"]["optimizer"] / 5


def test_out_of_memory_is_caught_and_larger_sizes_skipped(monkeypatch):
    args = bench.parse_args(["--smoke"])

    def fake_measure(size, method, args, device, dtype):
        if method == "full":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return {"size": size, "method": method, "fits": True,
                "parameters": {"tiny-a": 1, "tiny-b": 2}[size],
                "trainable": 1, "peak_memory_bytes": None, "estimate_bytes": None,
                "step_time_s": 1.0, "tokens_per_s": 1.0, "mfu": None}

    monkeypatch.setattr(bench, "measure", fake_measure)
    results = bench.run_all(args, torch.device("cpu"), torch.float32)
    rows = {(r["size"], r["method"]): r for r in results}
    assert rows["tiny-a", "full"] == {"size": "tiny-a", "method": "full", "fits": False,
                                      "error": "CUDA out of memory. Tried to allocate 2.00 GiB"}
    assert rows["tiny-b", "full"]["skipped"] == "a smaller size did not fit"
    assert bench.largest_fitting(results, ["full", "lora"]) == {"full": None, "lora": "tiny-b"}


def test_bad_arguments_are_rejected():
    with pytest.raises(SystemExit):
        bench.parse_args(["--sizes", "13B"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--methods", "qlora"])
