"""Step 2's experiment: what the labels teach. Three short fine-tunes of the base model that
differ only in their labels:

    assistant_only   the assistant's tokens and its <|im_end|> (the loss mask of step 2)
    no_mask          labels = input_ids: system, user and template tokens trained too
    no_end_token     the assistant's tokens without <|im_end|>: the model never learns to stop

Every run starts from the same weights and sees the same batches in the same order. Measured on
held-out test conversations: exact match of the greedy answer (course.evaluate's definition),
the loss on the answer tokens (the assistant's tokens + <|im_end|>, what a chat model must
say), the loss on the prompt tokens (system, user and template: what the mask leaves out), the
stop rate (the fraction of generations that emit <|im_end|> within `max_new_tokens`), and what
the model writes when it is made to go on past a finished answer (`continuation`: the share of
held-out conversations after which it writes a user turn of its own). During training, every
step's loss is also split into its answer tokens and its prompt tokens (`train_split`), for
every variant, from the same forward pass: what each variant's training loss is made of.

Two data regimes (`Budget.prompt_noise`):
    0   the course's data: prompts are stories like the pretraining text
    n   each user turn ends with a pasted block of n random words (a log, a document the user
        pasted): text the assistant should read, never write

    make bench-masking        # benchmarks/masking_ablation.py: both regimes -> JSON + PNG
    python -m benchmarks.masking_ablation --steps 20 --eval-limit 32   # quicker

The command line writes benchmarks/results/masking_ablation.json and .png. Labels come from
the library way (`course.data.tokenize_for_sft`, the chat template's assistant mask), not from
the exercise module, so the notebook can run this before the TODOs are done. A plain PyTorch
loop: no Trainer, nothing from step 3.
"""
from __future__ import annotations

import copy
import json
import os
import platform
import random
import time
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import torch
from tqdm.auto import tqdm

from course import REPO_ROOT
from course.data import IGNORE_INDEX, load_split, tokenize_for_sft
from course.device import seed_everything
from course.evaluate import chat_prompt, stop_token_ids
from course.models import count_parameters, load_base_model, load_tokenizer, resolve_model_name

RESULTS = REPO_ROOT / "benchmarks" / "results" / "masking_ablation.json"
VARIANTS = {
    "assistant_only": "assistant tokens + <|im_end|>",
    "no_mask": "labels = input_ids (no mask)",
    "no_end_token": "assistant tokens, <|im_end|> not trained",
}
IM_END = "<|im_end|>"


@dataclass(frozen=True)
class Budget:
    """How much each of the three runs trains and evaluates."""

    steps: int = 48               # optimizer steps per variant
    batch_size: int = 16          # conversations per step
    lr: float = 3e-3              # AdamW, linear warm-up over the first 10 % of steps
    eval_limit: int = 64          # held-out test conversations (generation and answer loss)
    max_new_tokens: int = 32      # generation budget; a model that does not stop cannot score
    max_length: int = 256         # tokens per training conversation (the course's are shorter)
    seed: int = 0
    prompt_noise: int = 0         # random words pasted at the end of every user turn (0: none)
    continue_tokens: int = 12     # tokens generated past a finished answer (`continuation`)


FULL = Budget()
QUICK = Budget(steps=24, eval_limit=32)      # for a slow or busy machine
GRADING = Budget(steps=2, batch_size=4, eval_limit=4, max_new_tokens=6)  # a smoke run


def with_prompt_noise(records: list[dict], words: int, seed: int) -> list[dict]:
    """Copies of `records` whose user turns end with `words` random words from the records' own
    vocabulary (seeded): a pasted block the assistant must read past, and never write."""
    if words <= 0:
        return list(records)
    vocab = sorted({w.strip('.,!?"') for r in records[:500] for m in r["messages"]
                    for w in m["content"].split()} - {""})
    rng = random.Random(seed)
    out = []
    for r in records:
        messages = [dict(m) for m in r["messages"]]
        for m in messages:
            if m["role"] == "user":
                m["content"] += "\n\n" + " ".join(rng.choice(vocab) for _ in range(words))
        out.append({**r, "messages": messages})
    return out


def variant_labels(example: dict, variant: str, end_id: int) -> list[int]:
    """The labels of one variant for an example from `tokenize_for_sft` (assistant-only)."""
    if variant == "assistant_only":
        return list(example["labels"])
    if variant == "no_mask":
        return list(example["input_ids"])
    if variant == "no_end_token":
        return [IGNORE_INDEX if t == end_id else t for t in example["labels"]]
    raise ValueError(f"unknown variant {variant!r}; expected one of {list(VARIANTS)}")


def pad_batch(examples: list[dict], labels: list[list[int]], pad_id: int
              ) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example: pad id, attention 0, label -100 on padding."""
    length = max(len(e["input_ids"]) for e in examples)
    ids, mask, lab = [], [], []
    for e, l in zip(examples, labels):
        gap = length - len(e["input_ids"])
        ids.append(list(e["input_ids"]) + [pad_id] * gap)
        mask.append([1] * len(e["input_ids"]) + [0] * gap)
        lab.append(list(l) + [IGNORE_INDEX] * gap)
    return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask),
            "labels": torch.tensor(lab)}


def training_batches(tokenizer, budget: Budget, train=None) -> list[list[dict]]:
    """`steps` batches of tokenized training conversations (from `train`, default the course's
    train split), the same for every variant."""
    train = train if train is not None else load_split("train")
    order = list(range(len(train)))
    random.Random(budget.seed).shuffle(order)
    need = budget.steps * budget.batch_size
    picked = [train[i % len(train)] for i in (order * (need // len(order) + 1))[:need]]
    picked = with_prompt_noise(picked, budget.prompt_noise, budget.seed + 1)
    examples = [tokenize_for_sft(r["messages"], tokenizer, budget.max_length) for r in picked]
    return [examples[i:i + budget.batch_size] for i in range(0, need, budget.batch_size)]


def token_losses(model, tokens: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token next-token loss of a padded batch, shape (B, L-1) (position t scores token
    t+1), and the mask of real (non-padding) targets."""
    logits = model(input_ids=tokens["input_ids"],
                   attention_mask=tokens["attention_mask"]).logits[:, :-1].float()
    targets = tokens["input_ids"][:, 1:]
    loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    return loss, tokens["attention_mask"][:, 1:].bool()


def split_mean(loss: torch.Tensor, where: torch.Tensor) -> float:
    return float((loss * where).sum() / where.sum().clamp(min=1))


def fine_tune(model, tokenizer, batches: list[list[dict]], variant: str, budget: Budget,
              progress: bool = True, split: list | None = None) -> list[float]:
    """Fine-tune `model` in place on `batches` with the variant's labels; the loss per step
    (token mean over the variant's labels, what `model(**batch).loss` returns). `split`, when
    given, receives per step the same forward pass's mean loss on the answer tokens and on the
    prompt tokens: [answer, prompt]."""
    end_id = tokenizer.convert_tokens_to_ids(IM_END)
    opt = torch.optim.AdamW(model.parameters(), lr=budget.lr, weight_decay=0.0)
    warmup = max(1, budget.steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
    model.train()
    losses = []
    for batch in tqdm(batches, desc=f"train {variant}", disable=not progress, leave=False):
        tensors = pad_batch(batch, [variant_labels(e, variant, end_id) for e in batch],
                            tokenizer.pad_token_id)
        answer = pad_batch(batch, [e["labels"] for e in batch],
                           tokenizer.pad_token_id)["labels"][:, 1:] != IGNORE_INDEX
        per_token, real = token_losses(model, tensors)
        trained = tensors["labels"][:, 1:] != IGNORE_INDEX
        loss = (per_token * trained).sum() / trained.sum().clamp(min=1)  # shifted once
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(round(loss.item(), 4))
        if split is not None:
            with torch.no_grad():
                split.append([round(split_mean(per_token, answer), 4),
                              round(split_mean(per_token, real & ~answer), 4)])
    model.eval()
    return losses


@torch.no_grad()
def prompt_and_answer_loss(model, tokenizer, records: list[dict], batch_size: int = 32
                           ) -> dict[str, float]:
    """Mean loss per answer token (assistant content + <|im_end|>) and per prompt token (every
    other real token: system, user, template) on `records`."""
    examples = [tokenize_for_sft(r["messages"], tokenizer) for r in records]
    sums = {"answer": [0.0, 0], "prompt": [0.0, 0]}
    for i in range(0, len(examples), batch_size):
        chunk = examples[i:i + batch_size]
        batch = pad_batch(chunk, [e["labels"] for e in chunk], tokenizer.pad_token_id)
        per_token, real = token_losses(model, batch)
        answer = batch["labels"][:, 1:] != IGNORE_INDEX
        for key, where in (("answer", answer), ("prompt", real & ~answer)):
            sums[key][0] += float((per_token * where).sum())
            sums[key][1] += int(where.sum())
    return {k: total / max(n, 1) for k, (total, n) in sums.items()}


def answer_loss(model, tokenizer, records: list[dict], batch_size: int = 32) -> float:
    """Mean loss per answer token (assistant content + <|im_end|>) on `records`."""
    return prompt_and_answer_loss(model, tokenizer, records, batch_size)["answer"]


@torch.no_grad()
def continuation(model, tokenizer, records: list[dict], new_tokens: int, batch_size: int = 48
                 ) -> dict:
    """Make the model go on past a finished answer: each whole conversation (its last answer and
    <|im_end|> included) is continued greedily for `new_tokens` tokens, stop tokens ignored.
    Returns the share of continuations that open a user turn (`<|im_start|>user`: the model
    writes the user's next message) and a few of them."""
    old_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    texts = []
    try:
        for i in range(0, len(records), batch_size):
            chunk = records[i:i + batch_size]
            enc = tokenizer([tokenizer.apply_chat_template(r["messages"], tokenize=False)
                             for r in chunk], return_tensors="pt", padding=True,
                            add_special_tokens=False)
            new = model.generate(**enc, max_new_tokens=new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id,  # never generated:
                                 eos_token_id=tokenizer.pad_token_id,  # no stop token
                                 )[:, enc["input_ids"].shape[1]:]
            texts += tokenizer.batch_decode(new, skip_special_tokens=False)
    finally:
        tokenizer.padding_side = old_side
    user = sum("<|im_start|>user" in t for t in texts)
    return {"writes_user_turn": user / max(len(texts), 1), "examples": texts[:3]}


@torch.no_grad()
def generate_answers(model, tokenizer, records: list[dict], max_new_tokens: int,
                     batch_size: int = 48) -> list[dict]:
    """Greedy answer to each record's last user turn: {prediction, stopped, reference}."""
    stops = stop_token_ids(tokenizer)
    end_id = tokenizer.convert_tokens_to_ids(IM_END)
    old_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    out = []
    try:
        for i in range(0, len(records), batch_size):
            chunk = records[i:i + batch_size]
            enc = tokenizer([chat_prompt(tokenizer, r["messages"]) for r in chunk],
                            return_tensors="pt", padding=True, add_special_tokens=False)
            new = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 eos_token_id=stops, pad_token_id=tokenizer.pad_token_id
                                 )[:, enc["input_ids"].shape[1]:]
            for record, row in zip(chunk, new.tolist()):
                cut = next((k for k, t in enumerate(row) if t in stops), len(row))
                out.append({"reference": record["messages"][-1]["content"],
                            "prediction": tokenizer.decode(row[:cut], skip_special_tokens=True),
                            "stopped": end_id in row})
    finally:
        tokenizer.padding_side = old_side
    return out


def evaluate(model, tokenizer, records: list[dict], budget: Budget) -> dict:
    """Exact match, answer and prompt loss, stop rate and continuation on held-out `records`."""
    answers = generate_answers(model, tokenizer, records, budget.max_new_tokens)
    n = max(len(answers), 1)
    losses = prompt_and_answer_loss(model, tokenizer, records)
    return {"exact_match": sum(a["prediction"].strip() == a["reference"].strip()
                               for a in answers) / n,
            "answer_loss": losses["answer"], "prompt_loss": losses["prompt"],
            "stop_rate": sum(a["stopped"] for a in answers) / n,
            "continuation": continuation(model, tokenizer, records, budget.continue_tokens),
            "examples": answers[:3]}


def run(budget: Budget = FULL, variants: list[str] | None = None, threads: int | None = None,
        progress: bool = True, models: dict | None = None, tokenizer=None,
        base_model=None, train=None) -> dict:
    """Train and evaluate every variant from the same base weights; the results as a dict.
    `models`, when given, receives each fine-tuned model by variant name. `tokenizer` and
    `base_model` (left unchanged: a copy is trained) and `train` (the train split) default to
    the course's."""
    if threads:
        torch.set_num_threads(threads)
    tokenizer = tokenizer or load_tokenizer()
    test = with_prompt_noise(list(load_split("test").select(range(budget.eval_limit))),
                             budget.prompt_noise, budget.seed + 2)
    seed_everything(budget.seed)
    batches = training_batches(tokenizer, budget, train)
    base = copy.deepcopy(base_model) if base_model is not None else load_base_model(device="cpu")
    state = {k: v.clone() for k, v in base.state_dict().items()}
    start, cpu = time.monotonic(), time.process_time()
    results = {"base": evaluate(base, tokenizer, test, budget)}
    results["base"].update(seconds=round(time.monotonic() - start, 1),
                           cpu_seconds=round(time.process_time() - cpu, 1))
    for variant in variants or list(VARIANTS):
        start, cpu = time.monotonic(), time.process_time()
        seed_everything(budget.seed)
        base.load_state_dict(state)
        split: list = []
        losses = fine_tune(base, tokenizer, batches, variant, budget, progress, split)
        train_s = time.monotonic() - start
        results[variant] = {"train_loss": losses, "train_split": split,
                            "train_seconds": round(train_s, 1),
                            **evaluate(base, tokenizer, test, budget)}
        results[variant].update(seconds=round(time.monotonic() - start, 1),
                                cpu_seconds=round(time.process_time() - cpu, 1))
        if models is not None:
            models[variant] = copy.deepcopy(base)
        if progress:
            r = results[variant]
            print(f"{variant:15s} exact match {r['exact_match']:6.1%}  answer loss "
                  f"{r['answer_loss']:.3f}  prompt loss {r['prompt_loss']:.3f}  stop rate "
                  f"{r['stop_rate']:6.1%}  writes a user turn "
                  f"{r['continuation']['writes_user_turn']:6.1%}  ({r['seconds']} s, "
                  f"{r['cpu_seconds']} s CPU)")
    return {"budget": asdict(budget), "variants": VARIANTS, "results": results,
            "model": Path(resolve_model_name()).name, "parameters": count_parameters(base),
            "date": date.today().isoformat(), "torch_threads": torch.get_num_threads(),
            "machine": platform.machine(), "load_1min": round(os.getloadavg()[0], 2),
            "total_seconds": round(sum(r["seconds"] for r in results.values()), 1),
            "total_cpu_seconds": round(sum(r["cpu_seconds"] for r in results.values()), 1)}
