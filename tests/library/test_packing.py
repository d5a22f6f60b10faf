"""Packing without cross-contamination (course/packing.py), proven against unpacked batches.

For the same conversations, a packed batch must give the same summed loss and the same gradients
as ordinary padded batches (fp32, 1e-5) on every attention route the course uses on CPU (sdpa and
eager; the block-diagonal 4D mask, the position_ids route, and the flattened flash-varlen layout,
which on CPU runs through the position_ids route). Each leak -- a plain causal mask over the
packed row, position_ids that do not restart, labels that cross a boundary -- must FAIL the same
comparison, so the comparison can fail. Padding waste of the whole train split <= 5 % with
packing and with length grouping. Step 3's loop trains on packed batches and reports the waste.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from course import REPO_ROOT, packing
from course.models import load_base_model, load_tokenizer

STEP3 = REPO_ROOT / "solutions" / "step3_sft"
TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def sft():
    sys.path.insert(0, str(STEP3))
    try:
        return importlib.import_module("sft_exercise")
    finally:
        sys.path.remove(str(STEP3))


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


@pytest.fixture(scope="module")
def examples(sft, tokenizer):
    from course.data import load_split
    return sft.tokenize_split(load_split("train").select(range(10)), tokenizer, 256)


def loss_and_grads(model, batches, sft) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Summed token loss over `batches` (step 3's token_loss_sum) and the gradients of it."""
    model.zero_grad(set_to_none=True)
    total = sum(sft.token_loss_sum(model, b) for b in batches)
    total.backward()
    return total.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def close(x: torch.Tensor, y: torch.Tensor, msg: str = "") -> None:
    """Equal to 1e-5, relative to the tensor's scale: summed losses make gradients grow with
    the token count, and fp32 sums in another order differ by ~1e-7 of that scale, while a leak
    across conversations changes them by a large fraction of it."""
    scale = max(1.0, y.abs().max().item())
    torch.testing.assert_close(x, y, rtol=TOL["rtol"], atol=TOL["atol"] * scale, msg=msg or None)


def same(a, b) -> bool:
    """Loss sums and every gradient equal to 1e-5 (relative to their scale)."""
    try:
        close(a[0], b[0])
        for name in a[1]:
            close(a[1][name], b[1][name], msg=name)
    except AssertionError:
        return False
    return True


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def setup(request, sft, tokenizer, examples):
    torch.manual_seed(0)
    model = load_base_model().float()
    model.set_attn_implementation(request.param)
    pad = tokenizer.pad_token_id
    unpacked = [sft.collate(examples[:4], pad), sft.collate(examples[4:], pad)]
    return model, pad, loss_and_grads(model, unpacked, sft)


@pytest.mark.parametrize("attention", packing.ATTENTION_MODES)
def test_packed_equals_unpacked(setup, sft, examples, attention):
    model, pad, reference = setup
    rows = packing.pack_examples(examples, max_length=512)
    assert len(rows) < len(examples)  # several conversations share a row
    batch = packing.collate_packed(rows, pad, attention)
    assert same(loss_and_grads(model, [batch], sft), reference)


def test_plain_causal_mask_leaks(setup, sft, examples):
    model, pad, reference = setup
    batch = packing.collate_packed(packing.pack_examples(examples, 512), pad, "block_mask")
    batch["attention_mask"] = batch["padding_mask"]  # causal over the whole packed row
    assert not same(loss_and_grads(model, [batch], sft), reference)


@pytest.mark.parametrize("attention", ["position_ids", "flash_varlen"])
def test_position_ids_that_do_not_restart_leak(setup, sft, examples, attention):
    model, pad, reference = setup
    batch = packing.collate_packed(packing.pack_examples(examples, 512), pad, attention)
    batch["position_ids"] = torch.arange(batch["input_ids"].shape[1]).expand_as(
        batch["input_ids"]).clone()  # no restart: the boundaries cannot be found
    assert not same(loss_and_grads(model, [batch], sft), reference)


def test_first_label_of_each_conversation_is_not_a_target(sft, tokenizer, examples):
    """With labels on every token (language modelling), the last token of one conversation
    must not be trained to predict the first token of the next: merge_row masks it."""
    model = load_base_model().float()
    pad = tokenizer.pad_token_id
    full = [dict(e, labels=list(e["input_ids"])) for e in examples[:6]]
    reference = loss_and_grads(model, [sft.collate(full, pad)], sft)
    rows = packing.pack_examples(full, 512)
    good = packing.collate_packed(rows, pad)
    assert same(loss_and_grads(model, [good], sft), reference)
    leaky = dict(good, labels=torch.where(good["padding_mask"].bool(), good["input_ids"],
                                           packing.IGNORE_INDEX))
    assert not same(loss_and_grads(model, [leaky], sft), reference)
    assert sft.supervised_tokens(good["labels"]) == sft.supervised_tokens(
        sft.collate(full, pad)["labels"])


def test_collate_shapes_and_counts(tokenizer, examples):
    pad = tokenizer.pad_token_id
    rows = packing.pack_examples(examples, 512)
    real = sum(len(e["input_ids"]) for e in examples)
    b = packing.collate_packed(rows, pad, "block_mask")
    n_rows, length = b["input_ids"].shape
    assert b["attention_mask"].shape == (n_rows, 1, length, length)
    assert packing.token_counts(b) == (real, n_rows * length)
    flat = packing.collate_packed(rows, pad, "flash_varlen")
    assert flat["input_ids"].shape == (1, real) and packing.padding_waste([flat]) == 0.0
    assert flat["cu_seq_lens"].tolist()[-1] == real and len(flat["cu_seq_lens"]) == len(examples) + 1
    assert "attention_mask" not in packing.collate_packed(rows, pad, "position_ids")
    with pytest.raises(ValueError, match="capacity"):
        packing.pack_examples(examples, 10)
    with pytest.raises(ValueError, match="attention"):
        packing.collate_packed(rows, pad, "causal")


def test_bins_respect_capacity_and_keep_every_item():
    lengths = [(i * 37) % 200 + 1 for i in range(500)]
    for strategy in ("bfd", "greedy"):
        bins = packing.pack_bins(lengths, 256, strategy)
        assert sorted(i for b in bins for i in b) == list(range(500))
        assert all(sum(lengths[i] for i in b) <= 256 for b in bins)
    assert len(packing.pack_bins(lengths, 256)) <= len(packing.pack_bins(lengths, 256, "greedy"))


def test_padding_waste_of_train_split_at_most_5_percent(sft, tokenizer):
    from course.data import load_split
    examples = sft.tokenize_split(load_split("train"), tokenizer, 256)
    lengths = [len(e["input_ids"]) for e in examples]
    rows = [sum(lengths[i] for i in b) for b in packing.pack_bins(lengths, 512)]
    packed = packing.waste_of_lengths(rows[i:i + 8] for i in range(0, len(rows), 8))
    order = packing.length_grouped_order(lengths, 16)
    grouped = packing.waste_of_lengths([lengths[i] for i in order[s:s + 16]]
                                       for s in range(0, len(order), 16))
    plain = packing.waste_of_lengths(lengths[s:s + 16] for s in range(0, len(lengths), 16))
    print(f"padding waste: random batches {plain:.1%}, packed {packed:.1%}, grouped {grouped:.1%}")
    assert packed <= 0.05 and grouped <= 0.05 < plain
    assert sorted(order) == list(range(len(lengths)))


def test_step3_loop_trains_on_packed_batches_and_reports_waste(sft, tokenizer, examples,
                                                                tmp_path):
    """The loop takes the packing collator; one step equals the padded loop's step (the same
    conversations, the same token-normalised loss), and the padding waste is reported."""
    results = {}
    for name, collate in (("padded", None), ("packed", packing.PackedCollator(512))):
        torch.manual_seed(0)
        model = load_base_model().float()
        cfg = sft.FinetuneConfig(max_steps=2, batch_size=5, eval_every=0, shuffle=False,
                                 output_dir=str(tmp_path / name), max_grad_norm=None)
        results[name] = sft.train(model, tokenizer, examples, [], cfg, progress=False,
                                  collate=collate)
    padded, packed = results["padded"], results["packed"]
    for a, b in zip(padded.train, packed.train):
        assert a["tokens"] == b["tokens"]
        # fp32 attention over rows of different lengths: equal up to rounding (up to 3.4e-5
        # relative measured on the embedded model)
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)
    assert 0.0 <= packed.padding_waste < padded.padding_waste
    assert all("padding_waste" in r for r in packed.train)


@pytest.mark.parametrize("layout", ["packed", "padded"])
def test_sparse_logits_loss_equals_full_logits(sft, tokenizer, examples, layout):
    """Step 3's token_loss_sum computes the output layer only at supervised positions: the same
    loss and gradients as logits everywhere (what model(labels=...) and the Trainer do)."""
    model = load_base_model().float()
    pad = tokenizer.pad_token_id
    batch = (packing.collate_packed(packing.pack_examples(examples, 512), pad)
             if layout == "packed" else sft.collate(examples[:16], pad))
    sparse = loss_and_grads(model, [batch], sft)

    class Full:  # token_loss_sum swapped for logits at every position
        token_loss_sum = staticmethod(packing.full_logits_loss_sum)
    assert same(sparse, loss_and_grads(model, [batch], Full))
