"""The GPU step's accounting, proven on the CPU at the real Qwen2.5 shapes under fake tensors:
the analytic FLOPs that MFU uses equal FlopCounterMode's count within 1 %, the memory estimate
equals the fake-tensor peak within 5 %, the chunked output-layer loss equals the plain one, and
the committed prediction table agrees with the estimate."""
from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn.functional as F

from course import flops, memory
from course.grading import load_reference
from course.recipe import (Recipe, bf16_update_stall, chunked_cross_entropy,
                           flash_attention_check, qwen_config, supervised_positions)
from benchmarks import predict_memory

FLOP_TOL = 0.01     # relative: analytic vs FlopCounterMode
MEMORY_TOL = 0.05   # relative: estimate vs fake-tensor peak


@pytest.fixture(scope="module")
def inject_lora():
    return load_reference("step4_lora", "lora_exercise").inject_lora


# --- the chunked, sparse output-layer loss --------------------------------------------------------
@pytest.mark.parametrize("trainable_head", [True, False])
def test_chunked_cross_entropy_equals_plain_cross_entropy(trainable_head):
    torch.manual_seed(0)
    hidden = torch.randn(37, 16, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(50, 16, dtype=torch.float64, requires_grad=trainable_head)
    targets = torch.randint(0, 50, (37,))
    ours = chunked_cross_entropy(hidden, weight, targets, chunk=8)
    ours.backward(torch.tensor(0.5, dtype=torch.float64))
    got = (hidden.grad.clone(), weight.grad.clone() if trainable_head else None)
    hidden.grad = weight.grad = None
    plain = F.cross_entropy(hidden @ weight.T, targets, reduction="sum")
    (0.5 * plain).backward()
    assert ours.item() == pytest.approx(plain.item(), rel=1e-6)
    torch.testing.assert_close(got[0], hidden.grad, rtol=1e-5, atol=1e-6)
    if trainable_head:
        torch.testing.assert_close(got[1], weight.grad, rtol=1e-5, atol=1e-6)


def test_supervised_positions_are_the_next_token_labels():
    labels = torch.tensor([[-100, -100, 5, 6], [-100, 7, -100, 8]])
    positions, targets = supervised_positions(labels)
    assert positions.tolist() == [1, 2, 4, 6] and targets.tolist() == [5, 6, 7, 8]


# --- FLOPs ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("recipe", [Recipe("full"), Recipe("lora"), Recipe("full", grad_ckpt=True)],
                         ids=["full", "lora", "full-grad-ckpt"])
def test_analytic_flops_equal_flop_counter_at_qwen25_05b(recipe, inject_lora):
    config = qwen_config("0.5B")   # every layer, the real width: fake tensors cost no FLOPs
    counted = flops.count_step_flops(config, recipe, 2, 2048, inject_lora=inject_lora)
    analytic = flops.step_flops(config, recipe, 2, 2048)
    expected = analytic["matmul"] + analytic["recompute"]
    assert counted["matmul"] == pytest.approx(expected, rel=FLOP_TOL)
    tokens = 2 * 2048
    n = config.num_hidden_layers
    split = memory.parameter_split(config, recipe)
    n_matmul = n * split["layer_matmul"] + split["embedding"]  # the tied head multiplies too
    if recipe.method == "full":  # the 6N convention (the head skips each row's last position)
        assert analytic["matmul"] == pytest.approx(6 * n_matmul * tokens, rel=1e-3)
    elif not recipe.grad_ckpt:   # 4N + 6 N_lora, less layer 0's q, k, v input gradients
        assert analytic["matmul"] == pytest.approx((4 * n_matmul + 6 * split["lora"]) * tokens,
                                                   rel=2e-3)
    assert analytic["attention"] == 14 * n * config.hidden_size * 2048 * tokens


def test_mfu_and_device_peaks():
    assert flops.peak_tflops("NVIDIA H200 NVL") == 835.0
    assert flops.peak_tflops("NVIDIA H200") == 989.0
    assert flops.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert flops.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert flops.peak_tflops("some CPU") is None
    assert flops.mfu(989e12 * 0.5, 1.0, 989.0) == pytest.approx(0.5)
    assert flops.mfu(1.0, 1.0, None) is None


# --- memory --------------------------------------------------------------------------------------
def test_live_bytes_follows_allocation_and_release():
    with memory.LiveBytes() as live:
        a = torch.empty(1024, dtype=torch.float32)
        b = torch.empty(512, dtype=torch.bfloat16)
        assert live.live == 4096 + 1024
        del a
        assert live.live == 1024 and live.peak == 4096 + 1024
        del b


@pytest.mark.parametrize("size,recipe", [
    ("0.5B", Recipe("full")), ("0.5B", Recipe("lora")), ("0.5B", Recipe("full", grad_ckpt=True)),
    ("0.5B", Recipe("lora", grad_ckpt=True)), ("0.5B", Recipe("full", precision="bf16")),
    ("0.5B", Recipe("lora", lora_dropout=0.05)), ("7B", Recipe("full")), ("7B", Recipe("lora")),
], ids=["0.5B-full-mixed", "0.5B-lora", "0.5B-full-grad-ckpt", "0.5B-lora-grad-ckpt",
        "0.5B-full-bf16", "0.5B-lora-dropout", "7B-full-mixed", "7B-lora"])
def test_memory_estimate_equals_fake_tensor_peak(size, recipe, inject_lora):
    config = qwen_config(size)
    fake = memory.fake_peak(config, recipe, 2, 2048, inject_lora=inject_lora)["peak"]
    est = memory.estimate_peak(config, recipe, 2, 2048)
    assert est["total"] == pytest.approx(fake, rel=MEMORY_TOL), (est, fake / 2**30)
    assert est["total"] == sum(est[k] for k in ("weights", "optimizer", "grads", "activations",
                                                 "autocast_copies", "loss"))


def test_parameter_split_matches_the_public_counts():
    assert memory.parameter_split(qwen_config("0.5B"), Recipe("full"))["total"] == 494_032_768
    assert memory.parameter_split(qwen_config("7B"), Recipe("full"))["total"] == 7_615_616_512


def test_mixed_precision_state_is_16_bytes_per_parameter():
    est = memory.estimate_peak(qwen_config("7B"), Recipe("full"), 2, 2048)
    assert est["weights"] + est["optimizer"] == 12 * 7_615_616_512  # + 4 of gradients


# --- the committed prediction table --------------------------------------------------------------
def test_committed_prediction_table_matches_the_estimate_and_meets_the_targets():
    folder = predict_memory.OUT
    report = json.loads((folder / f"{predict_memory.STEM}.json").read_text())
    assert report["what"] == "predicted on CPU"
    assert (folder / f"{predict_memory.STEM}.png").read_bytes()[:4] == b"\x89PNG"
    md = (folder / f"{predict_memory.STEM}.md").read_text()
    assert "predicted on CPU" in md
    sizes = {r["size"] for r in report["rows"]}
    assert sizes == {"0.5B", "1.5B", "3B", "7B"}
    for row in report["rows"]:
        recipe = Recipe(**row["settings"])
        est = memory.estimate_peak(qwen_config(row["size"]), recipe, report["batch_size"],
                                   report["seq_len"])
        assert row["estimate_gib"] == pytest.approx(est["total"] / 2**30, rel=1e-9)
        assert row["estimate_over_fake"] == pytest.approx(1.0, abs=MEMORY_TOL)
        assert row["fits_80"] == (row["estimate_gib"] <= 80)
        assert row["fits_141"] == (row["estimate_gib"] <= 141)
    ratio = report["lora_over_full"]
    assert ratio["0.5B"]["grad ckpt"] <= 0.5 and ratio["7B"]["grad ckpt"] <= 0.25


# --- precision and attention ---------------------------------------------------------------------
def test_pure_bf16_stalls_where_fp32_master_weights_move():
    stall = bf16_update_stall(steps=10, lr=1e-5, n=20_000)
    assert stall["changed_fp32_master"] > 0.99
    assert stall["changed_bf16"] < 0.3


def test_flash_attention_check_reports_either_way():
    result = flash_attention_check(qwen_config("tiny-a"), 1, 16, "cpu", torch.float32)
    assert isinstance(result["flash"], bool)
    assert result["flash"] or "error" in result


def test_figures_in_the_readme_and_step4_come_from_the_committed_table():
    from course import REPO_ROOT

    report = json.loads((predict_memory.OUT / f"{predict_memory.STEM}.json").read_text())
    row = {(r["size"], r["recipe"]): r for r in report["rows"]}
    readme = (REPO_ROOT / "README.md").read_text()
    for size, recipe in [("0.5B", "full"), ("0.5B", "lora"), ("0.5B", "full, grad ckpt"),
                         ("0.5B", "lora, grad ckpt"), ("7B", "full"), ("7B", "lora"),
                         ("7B", "full, grad ckpt"), ("7B", "lora, grad ckpt")]:
        figure = re.escape(f"{row[size, recipe]['estimate_gib']:.1f}")
        assert re.search(rf"\b{figure}( GiB| vs)", readme), (size, recipe)
    worst = max(abs(r["estimate_over_fake"] - 1) for r in report["rows"])
    assert worst <= 0.036 and "within 3.6 % of the fake-tensor count" in readme
    step4 = (REPO_ROOT / "solutions" / "step4_lora" / "tutorial.py").read_text()
    for recipe in ("full", "lora", "lora, dropout 0.05"):
        gib = row["7B", recipe]["estimate"]["activations"] / 2**30
        assert f"{gib:.1f} GiB" in step4, recipe
