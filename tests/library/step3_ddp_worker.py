"""Step 3's gradient rule under DistributedDataParallel, on CPU processes (gloo).

    torchrun --standalone --nproc_per_node 2 tests/library/step3_ddp_worker.py OUT.json

The course loop divides each micro-batch's summed loss S_i by the *global* supervised-token count
N (summed over processes) and needs the *sum* of the processes' gradients. DDP averages them, so
each process multiplies its loss by world_size. Rank 0 writes the DDP gradients and, from a fresh
copy of the same weights, the single-process gradients of the whole batch (the same rule with
one process). Used by tests/library/test_step3_ddp.py; not collected by pytest.
"""
from __future__ import annotations

import copy
import json
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

IGNORE = -100


def batch_of(examples: list[dict], pad: int) -> dict[str, torch.Tensor]:
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad)
    labels = torch.full((len(examples), width), IGNORE)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[row, :n], labels[row, :n] = torch.tensor(e["input_ids"]), torch.tensor(e["labels"])
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def summed_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The course's S_i: cross-entropy summed over the supervised tokens (shifted once)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return F.cross_entropy(logits[:, :-1].float().transpose(1, 2), batch["labels"][:, 1:],
                           ignore_index=IGNORE, reduction="sum")


def tokens(batch: dict[str, torch.Tensor]) -> int:
    return int((batch["labels"][:, 1:] != IGNORE).sum())


def grads(model) -> list[float]:
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()]).tolist()


def main(out: str) -> None:
    torch.set_num_threads(1)
    from course.data import load_split, tokenize_for_sft
    from course.models import load_base_model, load_tokenizer

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    tok = load_tokenizer()
    examples = [tokenize_for_sft(m, tok) for m in load_split("validation")["messages"][:8]]
    model = load_base_model(device="cpu")  # the same weights in every process
    reference = copy.deepcopy(model)

    # this process's share, in 2 micro-batches; N counted over every process
    mine = examples[rank::world]
    micro = [batch_of(mine[i::2], tok.pad_token_id) for i in range(2)]
    n = torch.tensor(float(sum(tokens(b) for b in micro)))
    dist.all_reduce(n)
    ddp = DistributedDataParallel(model)
    for i, b in enumerate(micro):
        sync = i == len(micro) - 1
        with (ddp.no_sync() if not sync else torch.enable_grad()):
            (summed_loss(ddp, b) / n * world).backward()  # DDP averages: x world_size
    ddp_grads = grads(model)

    if rank == 0:
        micro = [batch_of(examples[i::4], tok.pad_token_id) for i in range(4)]
        n_all = sum(tokens(b) for b in micro)
        for b in micro:
            (summed_loss(reference, b) / n_all).backward()
        with open(out, "w") as fh:
            json.dump({"world_size": world, "tokens": int(n.item()), "single_tokens": n_all,
                       "ddp": ddp_grads, "single": grads(reference)}, fh)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
