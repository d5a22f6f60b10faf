"""Step 3: the hand-written SFT loop (solutions/step3_sft/sft_exercise.py) equals the
libraries, accumulates exactly, resumes exactly and runs as 2 processes.

- per-step losses, gradient norms and final weights equal the HF `Trainer`'s (same model, data
  order, seed and hyperparameters), with and without gradient accumulation. In transformers 5
  the Trainer counts the supervised tokens of the whole accumulated batch (`num_items_in_batch`)
  and divides the summed loss by it, which is exactly the loop's normalisation, so even batches
  of unequal lengths and token counts are comparable. Tolerance: LOSS_TOL relative on losses and
  gradient norms, WEIGHT_TOL absolute on weights (float32; different but equivalent op order);
- the schedule equals `get_cosine_schedule_with_warmup`, the parameter groups the Trainer's;
- the accumulated gradient equals the full-batch gradient to 1e-5;
- a run killed mid-way and resumed ends with bit-identical weights (dropout on, so the RNG
  state matters); NaN losses, foreign checkpoints and interrupted writes fail cleanly;
- `torchrun --nproc_per_node 2` and `accelerate launch --multi_gpu --num_processes 2` (gloo on
  CPU) with half the batch per process follows the
  single-process trajectory within DIST_TOL.

Tiny runs (a few steps on the 64 shortest conversations, one thread): about 1 minute in all.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from course import REPO_ROOT
from course.batching import collate
from course.data import load_split
from course.grading import load_reference, patched
from course.models import load_base_model, load_tokenizer

STEP = "step3_sft"
LOSS_TOL = 1e-5      # relative, per-step loss and gradient norm vs the HF Trainer
WEIGHT_TOL = 1e-5    # absolute, weights after the run vs the HF Trainer
GRAD_TOL = 1e-5      # absolute, accumulated vs full-batch gradient
DIST_TOL = 1e-4      # relative, 2 processes vs 1 (different padding and reduction order)
WORKER = REPO_ROOT / "tests" / "library" / "step3_distributed_worker.py"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def sx():
    return load_reference(STEP, "sft_exercise")


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


@pytest.fixture(scope="module")
def examples(sx, tok):
    """The 64 shortest of the first 1000 training conversations and 16 validation ones, tokenized (step 2)."""
    train = sx.tokenize_split(load_split("train").select(range(1000)), tok, 256)
    train = sorted(train, key=lambda e: len(e["input_ids"]))[:64]
    val = sx.tokenize_split(load_split("validation").select(range(16)), tok, 256)
    return train, val


@pytest.fixture(scope="module")
def base():
    return load_base_model(device="cpu")


def _cfg(sx, tmp_path, **kw):
    values = dict(learning_rate=2e-3, max_steps=4, batch_size=4, grad_accum_steps=1,
                  warmup_steps=1, weight_decay=0.01, max_grad_norm=1.0, eval_every=0,
                  shuffle=False, seed=0, output_dir=str(tmp_path / "run"))
    return sx.FinetuneConfig(**{**values, **kw})


def _close(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol * max(1.0, abs(b))


# --- the library: schedule, parameter groups ------------------------------------------------
@pytest.mark.parametrize("warmup,total", [(0, 10), (3, 10), (10, 10), (5, 200), (1, 2)])
def test_schedule_equals_get_cosine_schedule_with_warmup(sx, warmup, total):
    from transformers import get_cosine_schedule_with_warmup

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    hf = get_cosine_schedule_with_warmup(opt, warmup, total).lr_lambdas[0]
    for step in range(total + 3):
        assert sx.lr_lambda(step, warmup, total) == pytest.approx(hf(step), abs=1e-12), step


def test_param_groups_decay_what_the_trainer_decays(sx, base):
    from transformers import Trainer

    decayed, plain = sx.param_groups(base, 0.1)
    names = {id(p): n for n, p in base.named_parameters()}
    ours = {names[id(p)] for p in decayed["params"]}
    trainer_names = set(Trainer.get_decay_parameter_names(None, base))
    assert ours == trainer_names & set(names.values())
    assert {names[id(p)] for p in plain["params"]} == set(names.values()) - ours
    assert any("norm" in names[id(p)] for p in plain["params"])
    assert any(names[id(p)].endswith("bias") for p in plain["params"])
    assert (decayed["weight_decay"], plain["weight_decay"]) == (0.1, 0.0)


# --- accumulation ----------------------------------------------------------------------------
def test_accumulated_gradient_equals_full_batch_gradient(sx, tok, examples, base):
    train, _ = examples
    batch = [train[i] for i in (0, 9, 20, 33, 41, 50, 58, 63)]  # unequal lengths and answers
    grads = {}
    for parts in (1, 2, 4, 8):
        model = copy.deepcopy(base)
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        size = len(batch) // parts
        micro = [collate(batch[i:i + size], tok.pad_token_id)
                 for i in range(0, len(batch), size)]
        stats = sx.train_step(model, opt, sched, micro, max_grad_norm=None)
        grads[parts] = (stats, {n: p.grad.clone() for n, p in model.named_parameters()})
    full_stats, full = grads[1]
    counts = [sx.supervised_tokens(collate([e], 3)["labels"]) for e in batch]
    assert len(set(counts)) > 2 and full_stats["tokens"] == sum(counts)
    for parts in (2, 4, 8):
        stats, g = grads[parts]
        assert stats["loss"] == pytest.approx(full_stats["loss"], abs=1e-6)
        worst = max((g[n] - full[n]).abs().max().item() for n in full)
        assert worst <= GRAD_TOL, f"{parts} micro-batches: max gradient difference {worst:.2e}"


# --- batches of similar lengths ---------------------------------------------------------------
def test_group_by_length_orders_each_epoch_into_similar_micro_batches(sx, tok):
    """group_by_length: every epoch is still a permutation of the whole set, new each epoch; its
    micro-batches waste far less padding than random ones; and 2 processes with half the batch
    train on exactly the sequences of 1 process (the grouping is per micro-batch over all)."""
    from course.packing import waste_of_lengths
    train = sx.tokenize_split(load_split("train").select(range(640)), tok, 256)
    lengths = [len(e["input_ids"]) for e in train]
    cfg = sx.FinetuneConfig(batch_size=8, grad_accum_steps=2, group_by_length=True, seed=3)
    plain = dataclasses.replace(cfg, group_by_length=False)
    orders = [sx.grouped_epoch_order(train, epoch, cfg) for epoch in (0, 1)]
    assert all(sorted(o) == list(range(len(train))) for o in orders) and orders[0] != orders[1]
    waste = {name: waste_of_lengths([lengths[i] for i in order[s:s + 8]]
                                    for s in range(0, len(order), 8))
             for name, order in (("grouped", orders[0]),
                                 ("random", sx.grouped_epoch_order(train, 0, plain)))}
    assert waste["grouped"] < waste["random"] / 3, waste
    half = dataclasses.replace(cfg, batch_size=4)
    pad = tok.pad_token_id

    def rows(batches):
        return sorted(tuple(r[m.bool()].tolist()) for b in batches
                      for r, m in zip(b["input_ids"], b["attention_mask"]))
    for step in (0, 7, 41):  # 40 steps per epoch: 41 is in the second epoch
        one = sx.micro_batches_for_step(train, step, cfg, pad)
        two = [sx.micro_batches_for_step(train, step, half, pad, rank, 2) for rank in (0, 1)]
        for a in range(cfg.grad_accum_steps):
            assert rows([one[a]]) == rows([two[0][a], two[1][a]])
    assert cfg.fingerprint()["group_by_length"] is True


# --- the HF Trainer --------------------------------------------------------------------------
def _trainer_run(sx, tok, train, base, cfg, tmp_path):
    from transformers import Trainer, TrainingArguments

    seen_items = []

    class Recording(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            seen_items.append(int(num_items_in_batch))
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    model = copy.deepcopy(base).train()
    args = TrainingArguments(
        output_dir=str(tmp_path / "hf"), max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum_steps, learning_rate=cfg.learning_rate,
        lr_scheduler_type="cosine", warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
        adam_beta1=cfg.adam_betas[0], adam_beta2=cfg.adam_betas[1], adam_epsilon=cfg.adam_eps,
        optim="adamw_torch", train_sampling_strategy="sequential", logging_steps=1,
        save_strategy="no", report_to="none", seed=cfg.seed, use_cpu=True,
        dataloader_num_workers=0, disable_tqdm=True, bf16=False, fp16=False)
    trainer = Recording(model=model, args=args, train_dataset=list(train),
                        data_collator=lambda f: collate(f, tok.pad_token_id))
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h and "grad_norm" in h]
    return model, logs, seen_items


@pytest.mark.parametrize("accum", [1, 4])
def test_per_step_losses_match_hf_trainer(sx, tok, examples, base, tmp_path, accum):
    train, _ = examples
    cfg = _cfg(sx, tmp_path, batch_size=8 // accum, grad_accum_steps=accum, max_steps=4)
    hf_model, hf_logs, items = _trainer_run(sx, tok, train, base, cfg, tmp_path)
    model = copy.deepcopy(base)
    result = sx.train(model, tok, train, [], cfg, progress=False)

    assert len(hf_logs) == len(result.train) == cfg.max_steps
    tokens = [r["tokens"] for r in result.train]
    assert items == [t for t in tokens for _ in range(accum)]  # Trainer's num_items_in_batch
    for ours, hf in zip(result.train, hf_logs):
        assert _close(ours["loss"], hf["loss"], LOSS_TOL), (ours, hf)
        assert _close(ours["grad_norm"], hf["grad_norm"], LOSS_TOL), (ours, hf)
    worst = max((p - q).abs().max().item()
                for p, q in zip(model.parameters(), hf_model.parameters()))
    assert worst <= WEIGHT_TOL, f"weights differ from the Trainer's by {worst:.2e}"


# --- checkpoints -----------------------------------------------------------------------------
def _with_dropout(base):
    model = copy.deepcopy(base)
    model.config.attention_dropout = 0.1  # random masks: resuming must restore the RNG
    for layer in model.model.layers:
        layer.self_attn.attention_dropout = 0.1
    return model


class Killed(RuntimeError):
    pass


def test_kill_and_resume_gives_identical_weights(sx, tok, examples, base, tmp_path):
    train, val = examples
    cfg = _cfg(sx, tmp_path, max_steps=6, save_every=2, eval_every=3, shuffle=True,
               output_dir=str(tmp_path / "straight"))
    straight = _with_dropout(base)
    sx.train(straight, tok, train, val, cfg, progress=False)

    cfg = dataclass_replace(cfg, output_dir=str(tmp_path / "killed"))

    def kill(step, stats):
        if step == 3:  # after the checkpoint of step 2, before the one of step 4
            raise Killed

    first = _with_dropout(base)
    with pytest.raises(Killed):
        sx.train(first, tok, train, val, cfg, progress=False, on_step=kill)
    assert torch.load(tmp_path / "killed" / sx.CHECKPOINT, weights_only=False)["step"] == 2
    torch.manual_seed(1234)  # a different RNG state: the checkpoint must bring its own back
    resumed = _with_dropout(base)  # a fresh process would start from the base weights
    result = sx.train(resumed, tok, train, val, cfg, resume=True, progress=False)
    assert [r["step"] for r in result.train] == [3, 4, 5, 6]
    for (name, p), q in zip(straight.named_parameters(), resumed.parameters()):
        assert torch.equal(p, q), f"{name} differs after resume"
    steps = [r["step"] for r in sx.read_metrics(tmp_path / "killed") if r["split"] == "train"]
    assert steps == sorted(set(steps))  # the log has no duplicate steps after the resume


def dataclass_replace(cfg, **kw):
    import dataclasses
    return dataclasses.replace(cfg, **kw)


def test_metrics_go_to_jsonl_and_tensorboard(sx, tok, examples, base, tmp_path):
    """Every logged train/validation record is in metrics.jsonl and, with tensorboard installed
    (the dev extra), in TensorBoard's event files under output_dir/tensorboard with the same
    values."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    train, val = examples
    cfg = _cfg(sx, tmp_path, max_steps=4, eval_every=2, log_every=1)
    sx.train(copy.deepcopy(base), tok, train, val, cfg, progress=False)
    records = sx.read_metrics(cfg.output_dir)
    assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3, 4]
    assert [r["step"] for r in records if r["split"] == "val"] == [0, 2, 4]
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/lr", "train/grad_norm", "val/loss", "val/perplexity"} <= set(
        events.Tags()["scalars"])
    for split in ("train", "val"):
        logged = [(e.step, e.value) for e in events.Scalars(f"{split}/loss")]
        expected = [(r["step"], r["loss"]) for r in records if r["split"] == split]
        assert [s for s, _ in logged] == [s for s, _ in expected]
        assert all(math.isclose(a, b, rel_tol=1e-6) for (_, a), (_, b) in zip(logged, expected))


def test_resume_refuses_another_config_or_model(sx, tok, examples, base, tmp_path):
    train, val = examples
    cfg = _cfg(sx, tmp_path, max_steps=1)
    sx.train(copy.deepcopy(base), tok, train, val, cfg, progress=False)
    with pytest.raises(sx.CheckpointMismatchError, match="learning_rate"):
        sx.train(copy.deepcopy(base), tok, train, val, dataclass_replace(cfg, learning_rate=1e-4),
                 resume=True, progress=False)
    from transformers import AutoModelForCausalLM
    config = copy.deepcopy(base.config)
    config.num_hidden_layers = 2
    config.layer_types = config.layer_types[:2]
    other = AutoModelForCausalLM.from_config(config)
    with pytest.raises(sx.CheckpointMismatchError, match="different model"):
        sx.train(other, tok, train, val, cfg, resume=True, progress=False)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(sx, tok, examples, base, tmp_path):
    train, val = examples
    cfg = _cfg(sx, tmp_path, max_steps=6, save_every=2)
    real = sx.token_loss_sum
    calls = []

    def poisoned(model, batch):
        calls.append(1)
        loss = real(model, batch)
        return loss * float("nan") if len(calls) > 3 else loss  # step 4 goes NaN

    with patched(sx, token_loss_sum=poisoned), \
            pytest.raises(sx.NonFiniteLossError, match="step 4: the training loss is nan"):
        sx.train(copy.deepcopy(base), tok, train, val, cfg, progress=False)
    state = sx.read_checkpoint(tmp_path / "run" / sx.CHECKPOINT)
    assert state["step"] == 2
    assert all(torch.isfinite(t).all() for t in state["model"].values())


@pytest.mark.parametrize("restore_best", [True, False])
def test_early_stopping_ends_on_the_best_weights(sx, tok, examples, base, tmp_path,
                                                 restore_best):
    """Early stopping with restore_best (the default) ends on the weights of the best
    evaluation, not on those `patience` evaluations later; without it, on the last step's."""
    train, val = examples
    cfg = _cfg(sx, tmp_path, max_steps=8, eval_every=1, early_stopping_patience=2,
               restore_best=restore_best)
    scripted = iter([5.0, 3.0, 2.0, 2.5, 2.6, 1.0, 1.0, 1.0, 1.0])  # best at step 2

    def fake_evaluate(model, batches):
        loss = next(scripted)
        return {"loss": loss, "perplexity": math.exp(loss), "tokens": 1}

    weights = {}

    def remember(step, stats):
        weights[step] = {k: v.clone() for k, v in model.state_dict().items()}

    model = copy.deepcopy(base)
    with patched(sx, evaluate=fake_evaluate):
        result = sx.train(model, tok, train, val, cfg, progress=False, on_step=remember)
    assert result.stopped_early and result.steps == 4 and result.best_step == 2
    assert not torch.equal(weights[2]["lm_head.weight"], weights[4]["lm_head.weight"])
    assert result.restored_best is restore_best
    want = weights[2] if restore_best else weights[4]
    for name, value in model.state_dict().items():
        assert torch.equal(value, want[name]), name
    saved = sx.read_checkpoint(tmp_path / "run" / sx.CHECKPOINT)
    assert saved["step"] == 4 and saved["extra"]["best_step"] == 2  # resumable where it stopped


def test_interrupted_write_keeps_previous_checkpoint(sx, base, tmp_path):
    model = copy.deepcopy(base)
    opt = sx.make_optimizer(model, sx.FinetuneConfig())
    sched = sx.make_scheduler(opt, 1, 10)
    path = sx.save_checkpoint(tmp_path / "c.pt", model, opt, sched, step=1)
    real_save = torch.save

    def crash(obj, f, *a, **k):  # writes half a file, then the machine "dies"
        with open(f, "wb") as fh:
            fh.write(b"PK\x03\x04 truncated")
        raise OSError("disk full")

    torch.save = crash
    try:
        with pytest.raises(OSError):
            sx.save_checkpoint(path, model, opt, sched, step=2)
    finally:
        torch.save = real_save
    assert sx.read_checkpoint(path)["step"] == 1


# --- 2 processes ------------------------------------------------------------------------------
def _launch(cmd, out, env_extra=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE="1",
               **(env_extra or {}))
    proc = subprocess.run([*cmd, str(WORKER), str(out)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads(out.read_text())


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    return _launch([sys.executable], tmp_path_factory.mktemp("single") / "single.json",
                   {"WORKER_BATCH": "8"})


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_two_processes_follow_the_single_process_trajectory(tmp_path, launcher, single_process):
    bin_dir = os.path.dirname(sys.executable)
    cmd = {"torchrun": [os.path.join(bin_dir, "torchrun"), "--standalone",
                        "--nproc_per_node", "2"],
           "accelerate": [os.path.join(bin_dir, "accelerate"), "launch", "--multi_gpu",
                          "--num_processes", "2", "--num_machines", "1",
                          "--main_process_port", str(_free_port()),
                          "--mixed_precision", "no", "--dynamo_backend", "no"]}[launcher]
    double = _launch(cmd, tmp_path / "double.json", {"WORKER_BATCH": "4"})
    single = single_process
    assert single["world_size"] == 1 and double["world_size"] == 2
    assert single["tokens"] == double["tokens"]  # supervised tokens all-reduced: same N
    for a, b in zip(single["losses"], double["losses"]):
        assert _close(b, a, DIST_TOL), (single["losses"], double["losses"])
    assert _close(double["val_loss"], single["val_loss"], DIST_TOL)
    assert max(abs(a - b) for a, b in zip(single["weights"], double["weights"])) <= 1e-4


def test_course_batches_equal_step_2s_hand_written_labels_and_collator(tok):
    """Step 3 tokenizes and pads the library way (course/batching.py); on the course's data that
    is step 2's answer token for token: labels, truncation and dropping, padding."""
    from course import batching

    masking = load_reference("step2_masking", "masking_exercise")
    rows = load_split("train").select(range(400))
    for max_length in (48, 256):
        hand = masking.labels_for_batch({"messages": rows["messages"], "id": rows["id"]},
                                        tokenizer=tok)
        examples = [{k: hand[k][i] for k in ("input_ids", "attention_mask", "labels")}
                    for i in range(len(rows))]
        kept, _ = masking.truncate_and_filter(examples, max_length)
        ours = batching.tokenize_split(rows, tok, max_length)
        assert ours == kept, max_length
    for chunk in (ours[:1], ours[:16], ours[100:133]):
        a, b = batching.collate(chunk, tok.pad_token_id), masking.collate(chunk, tok.pad_token_id)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype
                                            for k in a)
