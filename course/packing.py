"""Sequence packing without cross-contamination, and length-grouped batching (step 3, advanced).

Padding wastes compute: a batch of 16 random conversations is as long as its longest one, and
every pad position still goes through every layer. Two cures:

1. **Packing**: several conversations share one row of up to `max_length` tokens.

       rows = pack_examples(examples, max_length=256)           # each row: several conversations
       batch = collate_packed(rows[:8], pad_token_id)           # block-diagonal 4D mask
       loss_sum = sft.token_loss_sum(model, batch)              # step 3's loop takes it as is

   Packing is only correct when nothing crosses a conversation boundary:
   - attention: a token may only attend to earlier tokens *of its own conversation* -- a plain
     causal mask over the packed row lets conversation 2 read conversation 1;
   - positions: `position_ids` restart at 0 for every conversation, as if it were alone;
   - the loss: the first label of every conversation is IGNORE_INDEX, otherwise the last token
     of conversation 1 is trained to predict the first token of conversation 2.
   Then the packed batch gives the same summed loss and the same gradients as the conversations
   one by one (tests/library/test_packing.py proves it, and that each leak breaks it).

   How the boundary reaches attention depends on the implementation (`attention=`):
   - "block_mask" (sdpa, eager): `attention_mask` is a 4D additive float mask (B, 1, L, L),
     0 where query and key are in the same conversation and key <= query, a very negative
     number elsewhere; transformers passes a 4D mask to the kernel as is (masking_utils).
   - "position_ids" (sdpa, eager, flex): no attention_mask at all; transformers finds the
     conversations from where `position_ids` restart (`find_packed_sequence_indices`) and builds
     the block-diagonal mask itself. It only does so when attention_mask is None.
   - "flash_varlen" (flash_attention_2/3, CUDA only): every conversation of the batch in ONE
     row (B = 1) with restarting `position_ids` and no padding at all; flash attention's varlen
     kernel takes the boundaries as cu_seqlens, computed from position_ids (also returned here
     as `cu_seq_lens`). No mask and no wasted attention compute: the best layout on a GPU. On a
     CPU the same batch still trains correctly through sdpa/eager (the "position_ids" route),
     which is how the tests check it.
   With RoPE (Qwen2) a block-diagonal mask alone already makes attention scores depend only on
   the distance inside a conversation, so forgetting to restart positions costs only rounding
   there -- but it breaks models with absolute positions, the "position_ids" route and the
   flash varlen route, which *find* the boundaries from the restarts.

2. **Length grouping**: batches of conversations of similar length (`length_grouped_order`,
   like 🤗 Trainer's `group_by_length`), so there is little to pad, without touching attention.

`padding_waste(batches)` = padded positions / all positions: what both reduce.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
ATTENTION_MODES = ("block_mask", "position_ids", "flash_varlen")
MODEL_INPUTS = ("input_ids", "attention_mask", "position_ids")


# --- which conversations share a row ---------------------------------------------------------------
def pack_bins(lengths: Sequence[int], capacity: int, strategy: str = "bfd") -> list[list[int]]:
    """Group item indices into bins whose lengths sum to at most `capacity`.

    strategy "bfd" (best fit decreasing): longest first, each into the bin it fills best (the
    one with the least room that still fits) -- within a few percent of the fewest bins;
    "greedy": in the given order, a new bin when the next item does not fit (keeps the order,
    wastes more). Raises ValueError for an item longer than `capacity` (truncate first: step
    2's `truncate_and_filter`).
    """
    too_long = [i for i, n in enumerate(lengths) if n > capacity]
    if too_long:
        raise ValueError(f"example {too_long[0]} has {lengths[too_long[0]]} tokens, more than "
                         f"the packing capacity {capacity}; truncate to max_length first")
    bins: list[list[int]] = []
    if strategy == "greedy":
        room = 0
        for i, n in enumerate(lengths):
            if not bins or n > room:
                bins.append([])
                room = capacity
            bins[-1].append(i)
            room -= n
        return bins
    if strategy != "bfd":
        raise ValueError(f"unknown packing strategy {strategy!r}; use 'bfd' or 'greedy'")
    by_room: list[list[int]] = [[] for _ in range(capacity + 1)]  # room left -> open bins
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        n = lengths[i]
        room = next((r for r in range(n, capacity + 1) if by_room[r]), None)
        if room is None or room == capacity:  # nothing fits (or only empty bins): a new bin
            bins.append([i])
            by_room[capacity - n].append(len(bins) - 1)
            continue
        b = by_room[room].pop()
        bins[b].append(i)
        by_room[room - n].append(b)
    return bins


def _segments(example: dict) -> list[int]:
    """Lengths of the conversations in a row (an unpacked example is one conversation)."""
    return list(example.get("seq_lens") or [len(example["input_ids"])])


def pack_examples(examples: Sequence[dict], max_length: int, strategy: str = "bfd",
                  seed: int | None = 0) -> list[dict]:
    """Pack tokenised examples (input_ids + labels, e.g. step 3's `tokenize_split`) into rows of
    at most `max_length` tokens.

    Each row is {"input_ids", "labels", "position_ids", "seq_lens"} (lists): the examples'
    tokens one after the other, labels with IGNORE_INDEX on each conversation's first token,
    position ids restarting at 0 per conversation, and the conversations' lengths. Rows are
    shuffled with `seed` (None: kept in packing order) -- "bfd" puts the longest together.
    """
    lengths = [len(e["input_ids"]) for e in examples]
    rows = [merge_row([examples[i] for i in b]) for b in pack_bins(lengths, max_length, strategy)]
    if seed is not None:
        random.Random(seed).shuffle(rows)
    return rows


def merge_row(examples: Sequence[dict]) -> dict:
    """One packed row from examples (or rows) placed one after the other."""
    ids, labels, pos, lens = [], [], [], []
    for e in examples:
        segs = _segments(e)
        if sum(segs) != len(e["input_ids"]) or len(e["labels"]) != len(e["input_ids"]):
            raise ValueError("an example's input_ids, labels and seq_lens disagree in length")
        start = 0
        for n in segs:
            seg_labels = list(e["labels"][start:start + n])
            seg_labels[0] = IGNORE_INDEX  # no logit before it: never a target across a boundary
            labels += seg_labels
            pos += range(n)
            start += n
        ids += list(e["input_ids"])
        lens += segs
    return {"input_ids": ids, "labels": labels, "position_ids": pos, "seq_lens": lens}


# --- tensors ---------------------------------------------------------------------------------------
def segment_ids(seq_lens: Sequence[Sequence[int]], length: int) -> torch.Tensor:
    """(B, length) int64: which conversation each position belongs to (0, 1, ...); the padding
    tail of a row is a segment of its own (it then attends only to itself: no NaN rows)."""
    out = torch.empty(len(seq_lens), length, dtype=torch.long)
    for r, lens in enumerate(seq_lens):
        parts = [torch.full((n,), s, dtype=torch.long) for s, n in enumerate(lens)]
        pad = length - sum(lens)
        if pad:
            parts.append(torch.full((pad,), len(lens), dtype=torch.long))
        out[r] = torch.cat(parts)
    return out


def block_causal_mask(segments: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B, 1, L, L) additive mask from `segment_ids`: 0 where key <= query in the same segment,
    the dtype's most negative value elsewhere (eager adds it to the scores, sdpa accepts it)."""
    length = segments.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    allowed = (segments[:, :, None] == segments[:, None, :]) & causal
    mask = torch.zeros(allowed.shape, dtype=dtype)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]


def collate_packed(rows: Sequence[dict], pad_token_id: int, attention: str = "block_mask",
                   dtype: torch.dtype = torch.float32, pad_to_multiple_of: int | None = None
                   ) -> dict[str, torch.Tensor]:
    """Batch packed rows (`pack_examples`) -- or plain examples, one conversation each -- for the
    model, right-padded to the longest row (rounded up to `pad_to_multiple_of`).

    Returns int64 "input_ids", "labels" (IGNORE_INDEX on padding), "position_ids" (restarting
    per conversation; the padding tail counts 0, 1, ... as a segment of its own) and
    "padding_mask" (1 on real tokens; for counting, not a model input), plus by `attention`:
    "block_mask": "attention_mask" = `block_causal_mask` in `dtype` (the model's dtype);
    "position_ids": no attention_mask (transformers derives the boundaries);
    "flash_varlen": all rows flattened into one row without padding, plus "cu_seq_lens"
    (int32 cumulative conversation lengths, what flash attention's varlen kernel takes) and
    "max_seqlen".
    """
    if attention not in ATTENTION_MODES:
        raise ValueError(f"unknown attention {attention!r}; choose one of {ATTENTION_MODES}")
    rows = [r if "seq_lens" in r else merge_row([r]) for r in rows]
    if attention == "flash_varlen":
        rows = [merge_row(rows)]
    seq_lens = [_segments(r) for r in rows]
    length = max(len(r["input_ids"]) for r in rows)
    if pad_to_multiple_of and attention != "flash_varlen":
        length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    batch: dict[str, list] = {"input_ids": [], "labels": [], "position_ids": [], "padding_mask": []}
    for r in rows:
        gap = length - len(r["input_ids"])
        batch["input_ids"].append(list(r["input_ids"]) + [pad_token_id] * gap)
        batch["labels"].append(list(r["labels"]) + [IGNORE_INDEX] * gap)
        batch["position_ids"].append(list(r["position_ids"]) + list(range(gap)))
        batch["padding_mask"].append([1] * len(r["input_ids"]) + [0] * gap)
    out = {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}
    if attention == "block_mask":
        out["attention_mask"] = block_causal_mask(segment_ids(seq_lens, length), dtype)
    elif attention == "flash_varlen":
        lens = torch.tensor(seq_lens[0], dtype=torch.int32)
        out["cu_seq_lens"] = torch.cat([torch.zeros(1, dtype=torch.int32), lens.cumsum(0,
                                                                                       dtype=torch.int32)])
        out["max_seqlen"] = torch.tensor(int(lens.max()))
    return out


def balanced_bins(lengths: Sequence[int], max_length: int) -> list[list[int]]:
    """The fewest rows of at most `max_length` tokens (by "bfd"), with the longest row as short
    as possible: for one micro-batch, whose rows are padded to the longest one. Binary search
    on the row capacity between the ideal even split and `max_length`."""
    bins = pack_bins(lengths, max_length)
    lo, hi = max(max(lengths), -(-sum(lengths) // len(bins))), max_length
    while lo < hi:
        mid = (lo + hi) // 2
        trial = pack_bins(lengths, mid)
        if len(trial) <= len(bins):
            bins, hi = trial, mid
        else:
            lo = mid + 1
    return bins  # the packing found at capacity `hi`


@dataclass
class PackedCollator:
    """A `collate(features, pad_token_id)` for step 3's loop (`train(..., collate=...)`).

    With `max_length`: packs the micro-batch's examples into the fewest rows of at most
    `max_length` tokens, balanced so the longest row is short (`balanced_bins`) -- the step
    sees exactly the same conversations as with padding, only in fewer positions. Without it:
    the features are rows already (`pack_examples` over the whole split: the least padding)
    and are only batched. Either way through `collate_packed(..., attention, dtype)`.
    """

    max_length: int | None = None
    attention: str = "block_mask"
    dtype: torch.dtype = torch.float32

    def __call__(self, features: Sequence[dict], pad_token_id: int) -> dict[str, torch.Tensor]:
        rows = list(features)
        if self.max_length is not None and self.attention != "flash_varlen":
            lengths = [len(f["input_ids"]) for f in rows]
            rows = [merge_row([rows[i] for i in b]) for b in balanced_bins(lengths,
                                                                           self.max_length)]
        return collate_packed(rows, pad_token_id, self.attention, self.dtype)


def model_inputs(batch: dict[str, torch.Tensor], device: torch.device | str | None = None
                 ) -> dict[str, torch.Tensor]:
    """The keys of a batch the model takes (input_ids, attention_mask, position_ids), on
    `device`; counting keys (labels, padding_mask, cu_seq_lens) are left out."""
    return {k: batch[k].to(device) if device is not None else batch[k]
            for k in MODEL_INPUTS if batch.get(k) is not None}


def full_logits_loss_sum(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The summed cross-entropy over the supervised tokens, with logits at *every* position (what
    `model(..., labels=...)` and the 🤗 Trainer compute). Step 3's `token_loss_sum` returns the
    same value computing the output layer only at supervised positions; benchmarks and tests
    compare the two."""
    device = next(model.parameters()).device
    logits = model(**model_inputs(batch, device), use_cache=False).logits
    targets = F.pad(batch["labels"].to(device), (0, 1), value=IGNORE_INDEX)[:, 1:]
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")


# --- length-grouped batching -------------------------------------------------------------------------
def length_grouped_order(lengths: Sequence[int], batch_size: int, seed: int = 0,
                         mega_batch_mult: int = 50) -> list[int]:
    """An epoch order whose consecutive `batch_size` chunks have similar lengths (🤗 Trainer's
    `group_by_length`): shuffle, cut into mega-batches of `mega_batch_mult * batch_size`, sort
    each by length (longest first), then shuffle the batches so lengths do not drift over the
    epoch. Still random from epoch to epoch (change `seed`)."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    mega = mega_batch_mult * batch_size
    order = [i for s in range(0, len(order), mega)
             for i in sorted(order[s:s + mega], key=lambda i: -lengths[i])]
    batches = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return [i for b in batches for i in b]


# --- what padding costs --------------------------------------------------------------------------------
def real_positions(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, L) bool: which positions of a collated batch hold real tokens, marked by
    "padding_mask", else by a 2D "attention_mask", else every position is real."""
    mask = batch.get("padding_mask")
    if mask is None:
        mask = batch.get("attention_mask")
    if mask is None or mask.ndim != 2:
        return torch.ones_like(batch["input_ids"], dtype=torch.bool)
    return mask.bool()


def token_counts(batch: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(real tokens, all positions) of a collated batch (`real_positions`)."""
    return int(real_positions(batch).sum()), batch["input_ids"].numel()


def padding_waste(batches: Iterable[dict[str, torch.Tensor]]) -> float:
    """Padded positions / all positions over `batches` (0 = nothing wasted)."""
    real = total = 0
    for b in batches:
        r, t = token_counts(b)
        real, total = real + r, total + t
    return (total - real) / total if total else 0.0


def waste_of_lengths(groups: Iterable[Sequence[int]]) -> float:
    """Padding waste of batches given only their sequence lengths (each batch padded to its
    longest): fast, for whole-dataset figures without building tensors."""
    real = total = 0
    for g in groups:
        if g:
            real += sum(g)
            total += max(g) * len(g)
    return (total - real) / total if total else 0.0
