"""Batches for a training loop: tokenized examples, which examples make each optimizer step
(shuffled or grouped by length, split over accumulation and processes), and padding.

    examples = tokenize_split(load_split("train"), tokenizer, max_length=384)
    batches = micro_batches_for_step(examples, step, cfg, tokenizer.pad_token_id)

Labels and padding come the library way (`course.data.tokenize_for_sft`: the chat template's
assistant mask; torch's `pad_sequence`), which the course tests to equal step 2's hand-written
labels and collator token for token. `cfg` is any object with the fields of step 3's
`FinetuneConfig` that are read here (batch_size, grad_accum_steps, shuffle, group_by_length,
seed, eval_batches, and `global_batch_size()`).
"""
from __future__ import annotations

import functools
from typing import Callable, Sequence

import torch
from torch.nn.utils.rnn import pad_sequence

from course.data import IGNORE_INDEX, tokenize_for_sft


def collate(features: Sequence[dict], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad examples to the longest: int64 (B, L) "input_ids" (padded with
    `pad_token_id`), "attention_mask" (0 on padding), "labels" (IGNORE_INDEX on padding)."""
    def pad(key: str, value: int, default=None) -> torch.Tensor:
        rows = [torch.tensor(f[key] if key in f else default(f), dtype=torch.long)
                for f in features]
        return pad_sequence(rows, batch_first=True, padding_value=value)

    return {"input_ids": pad("input_ids", pad_token_id),
            "attention_mask": pad("attention_mask", 0, lambda f: [1] * len(f["input_ids"])),
            "labels": pad("labels", IGNORE_INDEX)}


_pad = collate  # the default of the functions below, whose `collate` argument shadows it


def tokenize_split(dataset, tokenizer, max_length: int) -> list[dict[str, list[int]]]:
    """Conversations (`course.data.load_split(...)` or a list of {"messages"}) -> examples with
    input_ids / attention_mask / labels (labels on the assistant's answers and their end
    token), cut to `max_length`; examples left without a trained token are dropped."""
    kept = []
    for i, row in enumerate(dataset):
        enc = tokenize_for_sft(row["messages"], tokenizer, record_id=row.get("id", i))
        enc = {k: v[:max_length] for k, v in enc.items()}
        if any(t != IGNORE_INDEX for t in enc["labels"]):
            kept.append(enc)
    return kept


def epoch_order(num_examples: int, epoch: int, cfg) -> list[int]:
    """The example order of an epoch: a permutation seeded by (seed, epoch), or 0..n-1."""
    if not cfg.shuffle:
        return list(range(num_examples))
    gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    return torch.randperm(num_examples, generator=gen).tolist()


@functools.lru_cache(maxsize=2)
def _grouped_order(lengths: tuple[int, ...], chunk: int, seed: int) -> list[int]:
    from course.packing import length_grouped_order  # the HF Trainer's group_by_length

    return length_grouped_order(lengths, chunk, seed=seed)


def grouped_epoch_order(examples: Sequence[dict], epoch: int, cfg, world_size: int = 1
                        ) -> list[int]:
    """`epoch_order`, or with `cfg.group_by_length` a random order whose consecutive chunks of
    batch_size * world_size sequences (one micro-batch over all processes) have similar
    lengths: little padding, and attention only as long as each micro-batch's longest
    sequence. Still a new order every epoch."""
    if not (cfg.group_by_length and cfg.shuffle):
        return epoch_order(len(examples), epoch, cfg)
    lengths = tuple(len(e["input_ids"]) for e in examples)
    return _grouped_order(lengths, cfg.batch_size * world_size, cfg.seed * 100_003 + epoch)


def micro_batches_for_step(examples: Sequence[dict], step: int, cfg, pad_token_id: int,
                           rank: int = 0, world_size: int = 1,
                           collate: Callable | None = None) -> list[dict[str, torch.Tensor]]:
    """This process's micro-batches of optimizer step `step` (0-based), collated.

    Step s of the run is batch s % steps_per_epoch of epoch s // steps_per_epoch (in the
    epoch's `grouped_epoch_order`: shuffled, by similar lengths with cfg.group_by_length). Its
    global batch (cfg.global_batch_size(world_size) examples) is cut into grad_accum_steps
    chunks; process `rank` takes positions [rank * batch_size, (rank + 1) * batch_size) of
    each chunk. The union over processes is the same set of sequences whatever the number of
    processes, so 2 processes with half the batch size train on what 1 process trains on.
    `collate(features, pad_token_id)` batches a chunk (default: `collate` above; e.g.
    `course.packing.PackedCollator` for packed rows).
    """
    collate = collate or _pad
    size = cfg.global_batch_size(world_size)
    per_epoch = len(examples) // size
    if per_epoch < 1:
        raise ValueError(f"{len(examples)} examples do not fill one batch of {size}")
    epoch, index = divmod(step, per_epoch)
    order = grouped_epoch_order(examples, epoch, cfg, world_size)[index * size:(index + 1) * size]
    chunk = cfg.batch_size * world_size
    out = []
    for a in range(cfg.grad_accum_steps):
        mine = order[a * chunk + rank * cfg.batch_size:a * chunk + (rank + 1) * cfg.batch_size]
        out.append(collate([examples[i] for i in mine], pad_token_id))
    return out


def eval_batches(examples: Sequence[dict], cfg, pad_token_id: int, rank: int = 0,
                 world_size: int = 1, collate: Callable | None = None
                 ) -> list[dict[str, torch.Tensor]]:
    """Validation micro-batches of this process (examples rank, rank + world_size, ...; sorted
    by length so little is padded), at most cfg.eval_batches of them."""
    mine = sorted(examples[rank::world_size], key=lambda e: len(e["input_ids"]))
    size = cfg.batch_size * 2  # no gradients: twice the micro-batch fits in the same memory
    collate = collate or _pad
    batches = [collate(mine[i:i + size], pad_token_id) for i in range(0, len(mine), size)]
    return batches[:cfg.eval_batches] if cfg.eval_batches else batches
