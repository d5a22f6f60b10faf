"""course.recipe's LoRA, both implementations (step 4's LoRALinear and peft), on a tiny Qwen2:
the same adapters (count, dtype, frozen base) and a training step that runs and moves only them.
The GPU benchmark's `--lora-impl peft` goes through this very code."""
from __future__ import annotations

import pytest
import torch

from course.grading import load_reference
from course.recipe import (Recipe, build_model, make_optimizer, parameter_counts, qwen_config,
                           random_batch, training_step)


@pytest.fixture(scope="module")
def inject_lora():
    return load_reference("step4_lora", "lora_exercise").inject_lora


@pytest.mark.parametrize("precision", ["mixed", "bf16"])
@pytest.mark.parametrize("impl", ["course", "peft"])
def test_lora_recipe_trains_only_the_adapters(impl, precision, inject_lora):
    config = qwen_config("tiny-a")
    recipe = Recipe("lora", precision=precision, lora_r=4, lora_alpha=8.0, lora_impl=impl)
    model = build_model(config, recipe, inject_lora=inject_lora)
    counts = parameter_counts(model)
    # 2 layers x 7 linear layers x r (d_in + d_out): q 64->64, k/v 64->32, o 64->64,
    # gate/up 64->128, down 128->64
    per_layer = 4 * ((64 + 64) + 2 * (64 + 32) + (64 + 64) + 2 * (64 + 128) + (128 + 64))
    assert counts["lora"] == counts["trainable"] == 2 * per_layer
    for name, p in model.named_parameters():
        assert p.requires_grad == ("lora_" in name), name
        assert p.dtype == (recipe.adapter_dtype if "lora_" in name else recipe.base_dtype), name
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids, positions, targets = random_batch(config, 2, 16)
    optimizer = make_optimizer(model, 1e-2)
    loss = training_step(model, optimizer, ids, positions, targets, recipe)
    assert torch.isfinite(loss)
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    # B starts at 0, so A's first gradient is 0: the first step moves every B and no A ...
    assert moved == {n for n in before if "lora_B" in n}
    training_step(model, optimizer, ids, positions, targets, recipe)
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved == {n for n in before if "lora_" in n}  # ... the second one A too


def test_both_implementations_count_the_same_adapters(inject_lora):
    config = qwen_config("tiny-b")
    counts = [parameter_counts(build_model(config, Recipe("lora", lora_r=8, lora_impl=impl),
                                           inject_lora=inject_lora))
              for impl in ("course", "peft")]
    assert counts[0] == counts[1]


def test_gpu_benchmark_runs_with_peft_lora(tmp_path):
    from benchmarks import gpu_lora_efficiency as bench

    report = bench.main(["--smoke", "--lora-impl", "peft", "--out", str(tmp_path / "peft"),
                         "--peak-tflops", "1", "--no-progress"])
    lora = [r for r in report["results"] if r["method"] == "lora"]
    assert lora and report["complete"]
    for row in lora:
        assert row["recipe"]["lora_impl"] == "peft" and "error" not in row
        assert 0 < row["trainable"] == row["lora_parameters"]
