"""Source of tutorial.ipynb, in percent format (cell markers: see course/nbgrader/source.py).

Edit this file, not the notebook: `make release` rebuilds solutions/step4_lora/tutorial.ipynb
from it and then the learner version in step4_lora/. Instructor-only: never released.
"""

# %% [markdown] intro
# # Step 4 — LoRA: fine-tuning a few million parameters instead of billions
#
# Full fine-tuning updates every weight, and pays for it: a gradient and two AdamW moments per
# parameter, and a full copy of the model per fine-tuned task. LoRA (Hu et al., 2021) freezes
# the pretrained weights and learns a **low-rank update** beside each chosen linear layer. In
# this step you write LoRA by hand — the layer, putting it into a model, saving an adapter that
# 🤗 peft loads, merging it back — and then compare it with full fine-tuning on the same data.
#
# **You will**
# - compute what LoRA saves (parameters and training memory), for a 7B model's 4096 × 4096
#   projection;
# - write `LoRALinear`: frozen base, A and B, the scaling alpha / r (and rsLoRA's alpha / √r),
#   dropout on the LoRA path, `merge()` / `unmerge()`;
# - inject it into the embedded Qwen2 model by module name, count trainable parameters, save
#   only the adapter (in peft's format) and merge it into a plain 🤗 transformers model;
# - run full fine-tuning and LoRA on the same batches and compare quality, memory, checkpoint
#   size and speed, then sweep the rank.
#
# **Time:** 90–120 minutes. The comparison of section 7 took 2.3 min on 2 CPU cores in the
# course's run (it shows progress bars; `SMALL = True` there trains half the steps).
# **You edit:** `lora_exercise.py` (13 TODOs) and one cell below. The notebook reloads the module
# before every cell: save the file and re-run the cell.
#
# **Checks:** each TODO has a check cell (✓ what passed, ✗ the classic mistake it looks like).
# Hidden tests run when your work is graded (`make grade STEP=step4_lora`). What steps 2 and 3
# built comes from the course's library (`course/`) and the answer key, so this step works even
# if you skipped them.

# %% setup
from course.notebook import setup

setup()  # %autoreload 2, and a short hint instead of a traceback for an unfinished TODO

import json
import tempfile
from pathlib import Path

import torch
from torch import nn

import lora_exercise as ex
from course import REPO_ROOT
from course import full_vs_lora
from course.checks import step4_lora as checks
from course.grading import load_reference
from course.models import load_base_model, load_tokenizer
from course.notebook import Table, is_grading, require

torch.manual_seed(0)
tokenizer = load_tokenizer()
model = load_base_model(device="cpu")
print(f"embedded base model: {sum(p.numel() for p in model.parameters()):,} parameters")

# %% [markdown]
# ## 1. What LoRA saves: parameters
#
# A linear layer holds a weight W of shape (out, in). Full fine-tuning learns a new W, so every
# one of its out × in entries gets a gradient and optimizer state. LoRA keeps W frozen and learns
# the update as a product of two thin matrices:
#
# $$W' = W + \Delta W = W + \frac{\alpha}{r}\, B A, \qquad A \in \mathbb{R}^{r \times in},\;
#   B \in \mathbb{R}^{out \times r}$$
#
# so only r × (in + out) numbers train. For example, a 4096 × 4096 projection (a 7B model's
# attention, LLaMA-7B's hidden size) has **16.8M** weights; with r = 8, A and B hold **65.5K** — 0.39 %, a
# 256-fold reduction for that layer. The bet behind LoRA: the change fine-tuning makes to a
# pretrained layer has low *intrinsic rank*, so a rank-8 update captures most of it.
#
# **TODO 1** — implement `lora_parameter_count(d_in, d_out, r)` in `lora_exercise.py`.

# %%
rows = []
for label, d_in, d_out in (("7B attention 4096 x 4096", 4096, 4096),
                           ("Qwen2.5-0.5B up_proj", 896, 4864),
                           ("Qwen2.5-7B up_proj", 3584, 18944),
                           ("embedded model up_proj", 128, 384)):
    for r in (8, 64):
        full, lora = ex.lora_parameter_count(d_in, d_out, r)
        rows.append([label, r, f"{full:,}", f"{lora:,}", f"{lora / full:.2%}"])
Table(rows, ["layer", "r", "full", "LoRA", "LoRA / full"], width=24)

# %% test lora_parameter_count points=1
checks.check_lora_parameter_count(ex)

# %% test lora_parameter_count_hidden points=1
# Hidden tests for lora_parameter_count run here when your work is graded.
### BEGIN HIDDEN TESTS
from course.grading import load_reference
load_reference("step4_lora", "hidden_checks").lora_parameter_count_hidden(
    ex, load_reference("step4_lora", "lora_exercise"))
### END HIDDEN TESTS

# %% [markdown]
# ## 2. What LoRA saves: memory
#
# Training memory has four parts. With AdamW in mixed precision (bf16 weights and gradients, an
# fp32 master copy and two fp32 moments per *trainable* parameter):
#
# | part | bytes | full fine-tuning | LoRA |
# |---|---|---|---|
# | weights | 2 per parameter | all | all (frozen, still needed for the forward pass) |
# | gradients | 2 per trainable parameter | all | A and B only |
# | optimizer (+ master copy) | 12 per trainable parameter | all | A and B only |
# | activations | batch × length × model size | same | about the same |
#
# Full fine-tuning of a 7B model needs 16 bytes × 7B = **112 GB** before activations; LoRA needs
# the 14 GB of bf16 weights plus a little. Activations do *not* shrink: gradients must still flow
# back through every frozen layer to reach the adapters below it (gradient checkpointing is the
# tool for those). Counted tensor by tensor for Qwen2.5-7B (batch 2 × 2048,
# `benchmarks/results/gpu/predicted/`), the activations come to 28.0 GiB for full fine-tuning
# and 22.6 GiB for LoRA: the frozen layers skip the few tensors only weight gradients need. LoRA
# dropout brings them up to 35.6 GiB: it keeps a dropped-out copy of every adapted layer's input.
#
# **TODO 2** — implement `estimate_training_memory(n_params, n_trainable, precision,
# activation_bytes)`.

# %%
seven_b, lora_7b = 7_615_616_512, 40_370_176  # Qwen2.5-7B; LoRA r=16 on every linear layer
rows = []
for name, trainable in (("full fine-tuning", seven_b), ("LoRA r=16, all-linear", lora_7b)):
    mem = ex.estimate_training_memory(seven_b + (trainable if trainable != seven_b else 0),
                                      trainable, "mixed")
    rows.append([name, f"{trainable:,}"] + [f"{mem[k] / 1e9:.1f} GB" for k in
                                            ("weights", "grads", "optimizer", "total")])
Table(rows, ["Qwen2.5-7B", "trainable", "weights", "grads", "optimizer", "total"], width=22)

# %% test estimate_training_memory points=1
checks.check_estimate_training_memory(ex)

# %% test estimate_training_memory_hidden points=1
# Hidden tests for estimate_training_memory run here when your work is graded.
### BEGIN HIDDEN TESTS
from course.grading import load_reference
load_reference("step4_lora", "hidden_checks").estimate_training_memory_hidden(
    ex, load_reference("step4_lora", "lora_exercise"))
### END HIDDEN TESTS

# %% [markdown]
# ## 3. The LoRA layer
#
# `LoRALinear(base, r, alpha)` wraps a frozen `nn.Linear` and adds a trainable path:
#
# ```
# y = base_layer(x) + lora_B(lora_A(lora_dropout(x))) * scaling
# ```
#
# - **r** (rank) sets the update's capacity and its size: r × (in + out) parameters.
# - **alpha** sets its strength: scaling = alpha / r. Keeping alpha / r fixed (alpha = 2r is the
#   common recipe, and LLaMA-Factory's default when alpha is not set; its example
#   configuration `examples/train_lora/llama3_lora_sft.yaml` trains r = 8 at lr 1e-4) lets you
#   change r without retuning the learning rate much.
# - **Why B = 0:** at initialisation B A = 0, so the adapted model *is* the pretrained model —
#   training starts from what the model knows, not from a random perturbation. A must not be
#   zero as well: B's gradient is (output gradient) × (A x), which is zero when A is, and A's
#   gradient goes through B — with both zero nothing ever moves. peft starts A like `nn.Linear`'s
#   own weights (Kaiming-uniform); with `init_lora_weights="gaussian"` it draws A from a
#   Gaussian with std 1/r (`init` below).
# - **rsLoRA** (rank-stabilised LoRA, Kalajdzievski 2023): with alpha / r the update shrinks as r
#   grows, so large ranks learn slowly; scaling by alpha / √r keeps its size steady.
# - **Dropout** regularises the adapter only: it is applied to the LoRA path's input; the frozen
#   base path never sees it.
#
# Names follow peft (`base_layer`, `lora_A`, `lora_B`, `lora_dropout`, `scaling`), so adapters
# you save load into peft unchanged.
#
# **TODO 3** — `LoRALinear.__init__`. **TODO 4** — `LoRALinear.forward`.

# %%
layer = ex.LoRALinear(nn.Linear(4096, 4096), r=8, alpha=16)
print(layer)
trainable = sum(p.numel() for p in layer.parameters() if p.requires_grad)
print(f"trainable {trainable:,} of {sum(p.numel() for p in layer.parameters()):,}")

# %% test lora_linear_init points=1
checks.check_lora_linear_init(ex)

# %% test lora_linear_init_hidden points=2
# Hidden tests for LoRALinear.__init__ run here when your work is graded.
### BEGIN HIDDEN TESTS
from course.grading import load_reference
load_reference("step4_lora", "hidden_checks").lora_linear_init_hidden(
    ex, load_reference("step4_lora", "lora_exercise"))
### END HIDDEN TESTS

# %%
layer = ex.LoRALinear(nn.Linear(4096, 4096), r=8, alpha=16)
x = torch.randn(2, 3, 4096)
with torch.no_grad():
    same = torch.equal(layer(x), layer.base_layer(x))
print("at init the LoRA layer equals its base layer:", same)

# %% test lora_linear_forward points=1
checks.check_lora_linear_forward(ex)

# %% test lora_linear_forward_hidden points=2
# Hidden tests for LoRALinear.forward run here when your work is graded.
### BEGIN HIDDEN TESTS
from course.grading import load_reference
load_reference("step4_lora", "hidden_checks").lora_linear_forward_hidden(
    ex, load_reference("step4_lora", "lora_exercise"))
### END HIDDEN TESTS

# %% [markdown]
# ### Merging: no extra cost at inference
#
# After training, B A × scaling is just a matrix of W's shape. Adding it into W (`merge()`)
# leaves one matmul per layer — the merged model is exactly as fast as the base model — and
# subtracting it again (`unmerge()`) gives the base back, for example to switch adapters.
# Merging twice must never add the update twice.
#
# **TODO 5** — `get_delta_weight()`. **TODO 6** — `merge()`. **TODO 7** — `unmerge()`.

# %% test get_delta_weight points=1
checks.check_get_delta_weight(ex)

# %% test get_delta_weight_hidden points=1
# Hidden tests for get_delta_weight run here when your work is graded.
### BEGIN HIDDEN TESTS
from course.grading import load_reference
load_reference("step4_lora", "hidden_checks").get_delta_weight_hidden(
    ex, load_reference("step4_lora", "lora_exercise"))
### END HIDDEN TESTS

# %% test merge points=1
checks.check_merge(ex)

# %% test merge_hidden points=2
# Hidden tests for merge run here when your work is graded.
### BEGIN HIDDEN TESTS
from course.grading import load_reference
load_reference("step4_lora", "hidden_checks").merge_hidden(
    ex, load_reference("step4_lora", "lora_exercise"))
### END HIDDEN TESTS

# %% test unmerge points=1
checks.check_unmerge(ex)

# %% test unmerge_hidden points=1
# Hidden tests for unmerge run here when your work is graded.
### BEGIN HIDDEN TESTS
from course.grading import load_reference
load_reference("step4_lora", "hidden_checks").unmerge_hidden(
    ex, load_reference("step4_lora", "lora_exercise"))
### END HIDDEN TESTS

# %% [markdown]
# ## 4. LoRA in a model
#
# peft chooses layers by **name**: a target matches a module whose name equals it or ends with
# "." + target — `"q_proj"` matches `model.layers.0.self_attn.q_proj`, but `"proj"` matches
# nothing and `"layers.1.mlp"` does not match `layers.10.mlp`. `"all-linear"` takes every
# linear layer except the output head (the QLoRA recipe; LLaMA-Factory's `lora_target: all`).
# The original LoRA paper adapted only `q_proj` and `v_proj`.
#
# **TODO 8** — `matches_target`. **TODO 9** — `find_target_modules`.

# %%
for name, _ in list(model.named_modules())[:12]:
    print(f"{name:40s} q_proj: {ex.matches_target(name, ['q_proj'])}")

# %% test matches_target points=1
checks.check_matches_target(ex)

# %% test matches_target_hidden points=1
# Hidden tests for matches_target run here when your work is graded.
### BEGIN HIDDEN TESTS
from course.grading import load_reference
load_reference("step4_lora", "hidden_checks").matches_target_hidden(
    ex, load_reference("step4_lora", "lora_exercise"))
### END HIDDEN TESTS

# %% test find_target_modules points=1
checks.check_find_target_modules(ex)

# %% test find_target_modules_hidden points=2
# Hidden tests for find_target_modules run here when your work is graded.
### BEGIN HIDDEN TESTS
from course.grading import load_reference
load_reference("step4_lora", "hidden_checks").find_target_modules_hidden(
    ex, load_reference("step4_lora", "lora_exercise"))
### END HIDDEN TESTS

# %% [markdown]
# **TODO 10** — `inject_lora(model, targets, r, alpha, ...)`: freeze the whole model, then
# replace each target by a `LoRALinear` in place. **TODO 11** — `count_parameters(model)`:
# (trainable, total), with the tied input/output embedding counted once (as peft does).

# %% test inject_lora points=1
checks.check_inject_lora(ex)

# %% test inject_lora_hidden points=2
# Hidden tests for inject_lora run here when your work is graded.
### BEGIN HIDDEN TESTS
from course.grading import load_reference
load_reference("step4_lora", "hidden_checks").inject_lora_hidden(
    ex, load_reference("step4_lora", "lora_exercise"))
### END HIDDEN TESTS

# %% test count_parameters points=1
checks.check_count_parameters(ex)

# %% test count_parameters_hidden points=1
# Hidden tests for count_parameters run here when your work is graded.
### BEGIN HIDDEN TESTS
from course.grading import load_reference
load_reference("step4_lora", "hidden_checks").count_parameters_hidden(
    ex, load_reference("step4_lora", "lora_exercise"))
### END HIDDEN TESTS

# %% [markdown]
# On the embedded model: how much trains for each choice of targets? (In a model this small the
# embedding matrix is a large share of all parameters; in a 7B model it is about 7 %.)

# %%
rows = []
for targets in (["q_proj", "v_proj"], "all-linear"):
    for r in (8, 64):
        adapted = ex.inject_lora(load_base_model(device="cpu"), targets, r=r, alpha=2 * r)
        n_trainable, n_total = ex.count_parameters(adapted)
        rows.append([str(targets), r, f"{n_trainable:,}", f"{n_total:,}",
                     f"{n_trainable / n_total:.2%}"])
Table(rows, ["targets", "r", "trainable", "total", "share"], width=24)

# %% [markdown]
# ## 5. Save only the adapter, load it with peft, merge it away
#
# An adapter is A and B of every LoRA layer — kilobytes to megabytes, not a model copy. peft
# stores it as `adapter_config.json` + `adapter_model.safetensors`, with keys like
# `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`. Match that format and
# `PeftModel.from_pretrained(base, folder)` loads your adapter unchanged.
#
# **TODO 12** — `adapter_state_dict(model)`. **TODO 13** — `merge_and_unload(model)`: merge every
# LoRA layer and put its base layer back, leaving a plain model that `save_pretrained` writes and
# `from_pretrained` reads without peft.

# %% test adapter_state_dict points=1
checks.check_adapter_state_dict(ex)

# %% test adapter_state_dict_hidden points=1
# Hidden tests for adapter_state_dict run here when your work is graded.
### BEGIN HIDDEN TESTS
from course.grading import load_reference
load_reference("step4_lora", "hidden_checks").adapter_state_dict_hidden(
    ex, load_reference("step4_lora", "lora_exercise"))
### END HIDDEN TESTS

# %% test merge_and_unload points=1
checks.check_merge_and_unload(ex)

# %% test merge_and_unload_hidden points=2
# Hidden tests for merge_and_unload run here when your work is graded.
### BEGIN HIDDEN TESTS
from course.grading import load_reference
load_reference("step4_lora", "hidden_checks").merge_and_unload_hidden(
    ex, load_reference("step4_lora", "lora_exercise"))
### END HIDDEN TESTS

# %% [markdown]
# The library way, side by side: save your adapter, load it with peft into a fresh base model,
# and compare outputs; then merge and reload as a plain 🤗 model.

# %%
from transformers import AutoModelForCausalLM

ids = torch.tensor([tokenizer("Once upon a time, there was a little girl.")["input_ids"]])
ours = ex.inject_lora(load_base_model(device="cpu"), "all-linear", r=8, alpha=16)
with torch.no_grad():  # pretend it was trained: a non-zero B everywhere
    for name, p in ours.named_parameters():
        if "lora_B" in name:
            p.normal_(std=0.02)
    expected = ours(ids).logits
with tempfile.TemporaryDirectory() as tmp:
    ex.save_adapter(ours, f"{tmp}/adapter")
    print({p.name: f"{p.stat().st_size:,} bytes" for p in Path(f"{tmp}/adapter").iterdir()})
    try:
        from peft import PeftModel
        peft_model = PeftModel.from_pretrained(load_base_model(device="cpu"), f"{tmp}/adapter")
        with torch.no_grad():
            print("peft loads our adapter, max |difference|:",
                  (peft_model(ids).logits - expected).abs().max().item())
    except ImportError:
        print("peft is not installed; skipping the library check")
    ex.merge_and_unload(ours).save_pretrained(f"{tmp}/merged")
    plain = AutoModelForCausalLM.from_pretrained(f"{tmp}/merged")
    with torch.no_grad():
        print("merged model reloaded without peft, max |difference|:",
              (plain(ids).logits - expected).abs().max().item())

# %% [markdown]
# ## 6. LoRA wants a higher learning rate
#
# The rule: **LoRA's best learning rate is about ten times full fine-tuning's.** Full fine-tuning
# of a pretrained 0.5B–7B model uses about 1e-5 (5e-6 to 2e-5): a larger step overwrites what
# the model knew; LoRA on the same model, about 1e-4. LoRA's update starts at zero and lives in
# a small subspace, so it needs — and tolerates — the larger step. Source: Schulman et al.,
# *LoRA Without Regret* (Thinking Machines, 2025), who swept both rates on Llama and Qwen models
# and found LoRA's optimum about 10× full fine-tuning's, nearly independent of the rank.
#
# Measured on the embedded model (`make bench-lora-tuning`, `benchmarks/results/
# full_vs_lora_tuning.json`: 120 steps of 16 conversations, each rate scored on 300 validation
# conversations). The model is tiny and far from the answers' format, so both rates are far
# larger than for a real model, but the ratio holds: by validation loss, full fine-tuning is
# best at 1e-3 and LoRA r = 8 at 1e-2, ten times more; by validation exact match, full
# fine-tuning at 5e-4 and LoRA at 5e-3 (r = 4 and 32) to 1e-2 (r = 8), ten to twenty times
# more. Too far is unstable: LoRA r = 8 at 2e-2 scores 0 % (full fine-tuning at 4e-3: 13 %).
#
# **Your call** — set `LORA_LR`, the learning rate of the LoRA runs below.

# %%
FULL_LR = 5e-4  # full fine-tuning's rate, tuned on validation exact match (above)
print(f"full fine-tuning learning rate: {FULL_LR:g}")

# %% solution choose_lora_lr
LORA_LR = None
# TODO: set LORA_LR (a float) for LoRA with alpha = 2r on the embedded model.
### BEGIN SOLUTION
LORA_LR = 20 * FULL_LR  # LoRA r = 8: its tuned rate, 1e-2 (ten to twenty times full's)
### END SOLUTION

# %% test lora_lr points=1
lr = require(LORA_LR, "LORA_LR", "Your call: set LORA_LR")
if not isinstance(lr, float) or not 5 * FULL_LR <= lr <= 20 * FULL_LR:
    from course.grading import fail
    fail(f"LORA_LR is a float, 5 to 20 times FULL_LR = {FULL_LR:g} (about ten times)",
         mistake="LoRA trained at full fine-tuning's rate (or a few times it) barely moves in a "
                 "short run; far above twenty times, it turns unstable", got=lr)
print(f"\N{CHECK MARK} LORA_LR = {lr:g}, {lr / FULL_LR:g} x full fine-tuning's")

# %% [markdown]
# ## 7. Full fine-tuning vs LoRA, on the same batches
#
# `course.full_vs_lora.compare` runs both with **your** `inject_lora`, `save_adapter` and
# `merge_and_unload`, step 2's labels and collator and step 3's training loop: the same
# conversations in the same order, the same number of steps, each method at its own tuned
# learning rate (full fine-tuning `FULL_LR`, LoRA r = 8 your `LORA_LR`, the other ranks of the
# sweep at the rates tuned for them, `full_vs_lora.TUNED_LORA_LR_BY_RANK`). It reports, on the
# same 200 held-out test conversations, exact match and the loss per answer token; the loss on
# plain held-out stories, the base model's kind of text (forgetting); trainable parameters,
# optimizer state and checkpoint size; training memory (weights + gradients + optimizer state +
# the activations autograd keeps, counted tensor by tensor; on a GPU also
# `torch.cuda.max_memory_allocated`) and the median step time. It picks the GPU when there is
# one. The cell prints the course's own run time first; it shows progress bars, and
# `SMALL = True` trains half the steps without the rank sweep. While your work is graded, the
# committed results are shown instead.

# %%
SMALL = False  # True on a slow or busy machine: 60 steps, no rank sweep
committed = REPO_ROOT / "benchmarks" / "results" / "full_vs_lora_cpu.json"  # `make bench-lora`
if committed.exists():
    last = full_vs_lora.load(committed)
    print(f"the course's run of this cell: {last.seconds / 60:.1f} min on {last.device} "
          f"({last.meta.get('threads')} threads, load {last.meta.get('load_1min', '?')})")
if is_grading():  # not graded: show the committed CPU results instead of training
    result = full_vs_lora.load(committed) if committed.exists() else None
else:
    config = full_vs_lora.default_config(
        lora_lr=require(LORA_LR, "LORA_LR", "Your call: set LORA_LR"), full_lr=FULL_LR,
        **({"steps": 60, "ranks": ()} if SMALL else {}))
    # steps 2 and 3's answers (labels, collator, the training loop) from the answer key
    earlier = [load_reference(*m) for m in (("step2_masking", "masking_exercise"),
                                            ("step3_sft", "sft_exercise"))]
    result = full_vs_lora.compare(ex, *earlier, config)
print(result.table() if result else f"no results: run `make bench-lora` to write {committed}")

# %% [markdown]
# ### Is a difference real? The tuned comparison
#
# One run scored on 200 test conversations measures exact match within about ±7 points (95 %),
# and one learning rate for every method may favour one of them. `make bench-lora-tuning` does
# the comparison properly: each method at the rate tuned for it on validation conversations
# (section 6), several seeds, 1000 test conversations, exact match and the loss per answer token
# on those same conversations, and the loss on plain held-out stories before and after
# fine-tuning (forgetting). Its committed results:

# %%
from IPython.display import Image

tuned = json.loads((REPO_ROOT / "benchmarks" / "results" / "full_vs_lora_tuning.json")
                   .read_text())
base = tuned["base"]
Table([[m, f"{r['lr']:g}", r["seeds"],
        f"{r['exact_match']:.1%} ({r['exact_match_min']:.1%}–{r['exact_match_max']:.1%})",
        f"{r['test_loss']:.3f}", f"{r['story_loss']:.3f}", f"{r['per_task']['feeling']:.0%}"]
       for m, r in tuned["summary"].items()]
      + [["base model", "-", "-", f"{base['exact_match']:.1%}", f"{base['test_loss']:.3f}",
          f"{base['story_loss']:.3f}", "-"]],
      ["method", "lr", "seeds", "exact match (seeds' range)", "test loss", "story loss",
       "'feeling' task"], width=14)
Image(str(REPO_ROOT / "benchmarks" / "results" / "full_vs_lora_tuning.png"))

# %% [markdown]
# What it shows (a test checks these figures against the JSON):
#
# - **Exact match and loss disagree.** Full fine-tuning has by far the lowest loss per answer
#   token (0.259, against 0.807 for LoRA r = 8 and 0.726 for r = 32) but not the highest exact
#   match: LoRA r = 32 scores 46.2 % against full fine-tuning's 43.6 %, within the spread of
#   the seeds (40.7 %–51.8 % and 41.0 %–45.6 %). What r = 32 gains is nearly all one task, the
#   feeling question (72 % against 12 %), answered with one word picked out of the story. The loss weighs
#   every answer token, and most of them are in the long answers (story openings, summaries),
#   which full fine-tuning models best; exact match counts conversations, and short answers that
#   hinge on one word decide it. Read both, and read them per task.
# - **Full fine-tuning vs LoRA r = 8**, each at its tuned rate: 43.6 % against 33.0 %, with the
#   seeds alone spreading LoRA r = 8 from 25.9 % to 41.4 %: full fine-tuning is better here, but
#   one seed and 200 conversations could have shown the two close.
# - **Rank.** On validation at their best rates, r = 1, 4, 8 and 32 reach 18 %, 31 %, 39 % and
#   49 %: in 120 steps on this task a higher rank has not stopped paying off by r = 32 (r = 1's
#   best rate lies at the edge of the grid, 2e-2, so it may be under-tuned).
# - **Forgetting.** Every method forgets much of the story text it was pretrained on: the loss on
#   plain held-out stories goes from 0.765 (base model) to 2.090 after full fine-tuning, 2.805
#   after LoRA r = 8 and 3.193 after r = 32. Here LoRA forgets *more*, not less. The often quoted
#   "LoRA learns less and forgets less" (Biderman et al., 2024) compares at rates where LoRA also
#   learns less; run at the ten to twenty times higher rate it needs to learn as much in 120
#   steps, its update moves the story text at least as far. Mixing pretraining text into the SFT
#   data is the usual remedy (not measured here).

# %%
from course.plots import full_vs_lora_figures

fig = full_vs_lora_figures(result, ["curves"])["curves"] if result else None

# %% [markdown]
# Read the curves: does LoRA's validation loss follow full fine-tuning's, and how close does it
# end? Then the costs — LoRA trains a few percent of the parameters, so its optimizer state and
# checkpoint shrink by the same factor; its memory shrinks much less, because the frozen weights
# and the activations are still there, and at this size the activations are nearly all of it.
# The step time does not shrink at all here: in the committed CPU run LoRA's median step took
# 151 ms against full fine-tuning's 138 ms. LoRA saves the gradients of the frozen weight
# matrices, but adds two small matmuls (A, then B) and an add to every adapted layer, forward
# and backward, and the backward pass still runs through every layer. With 128-wide layers each
# of those operations is tiny, and on a CPU its fixed cost per call matters as much as its
# arithmetic: the added calls outweigh the saved ones. The saving shows on large models, where
# the frozen weights' gradients are big matmuls (`make gpu`'s sweep measures it on a GPU).

# %%
fig = full_vs_lora_figures(result, ["costs"])["costs"] if result else None

# %% [markdown]
# The rank sweep: quality against trainable parameters (log scale), each rank at its own tuned
# rate. Where does a higher rank stop paying off on this task? Compare with the tuned
# comparison above before you answer: one run on 200 conversations is ±7 points.

# %%
fig = full_vs_lora_figures(result, ["ranks"]).get("ranks") if result else None

# %% [markdown]
# ### On a GPU
#
# On a CUDA machine, `make gpu` runs, in one go, this comparison with a longer budget and a
# sweep over real Qwen2.5 sizes (0.5B, 1.5B, 3B, 7B, built from their configurations): peak
# memory measured next to its prediction, step time, tokens/s, MFU, and the largest model each
# method trains on the card. Full fine-tuning there uses mixed precision (fp32 master weights,
# bf16 matmuls), LoRA keeps its frozen base in bf16, and the output layer scores only the
# supervised positions, a chunk at a time. Results measured on a GPU are committed under
# `benchmarks/results/gpu/<device>/`; the peak memory predicted on this CPU (fake tensors, no
# GPU) is in `benchmarks/results/gpu/predicted/`.

# %%
from course import gpu_results

found = gpu_results.find()
if not found:
    print("No GPU results are committed yet: `make gpu` on a CUDA machine writes them to "
          "benchmarks/results/gpu/<device>/.")
for device_results in found:
    print(device_results.summary())
predicted = gpu_results.GPU_RESULTS / gpu_results.PREDICTED / "memory_predicted.md"
if predicted.exists():
    print(predicted.read_text())

# %% [markdown] checklist
# ## Checklist
#
# - [ ] I can compute LoRA's trainable parameters for a layer (4096 × 4096 at r = 8: 16.8M vs
#   65.5K) and say why training memory shrinks less than that.
# - [ ] I can explain what r and alpha do, why B starts at zero (and A does not), and what rsLoRA
#   changes.
# - [ ] My `LoRALinear` puts dropout on the LoRA path only, and merging twice never doubles the
#   update.
# - [ ] I can choose target modules by name and count the trainable parameters as peft does.
# - [ ] My adapter loads with `PeftModel.from_pretrained`, and my merged model with plain
#   `from_pretrained`.
# - [ ] I can read the full vs LoRA comparison: quality, memory, checkpoint size, step time, and
#   the rank sweep — and say why LoRA uses a higher learning rate.
#
# **Grade yourself:** `make grade STEP=step4_lora`. **Compare** with the answer key:
# [solutions/step4_lora/lora_exercise.py](../solutions/step4_lora/lora_exercise.py) and
# [solutions/step4_lora/tutorial.ipynb](../solutions/step4_lora/tutorial.ipynb).
#
# This is the last step. **Back to** [Step 3 — the training loop](../step3_sft/tutorial.ipynb).
