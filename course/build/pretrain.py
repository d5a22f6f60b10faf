"""Pretrain the embedded base model on generated stories (CPU, minutes), then save it.

    python -m course.build.pretrain                  # what `make base-model` runs
    python -m course.build.pretrain --steps 50 --out /tmp/m   # a quick smoke run

Pipeline: generate the corpus -> train the BPE tokenizer -> pack documents into a token stream
separated by <|endoftext|> -> next-token training of a small Qwen2 (real transformers classes)
-> validation loss on stories with held-out names -> save weights, config, tokenizer.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

from course.build.make_data import SEED, name_pools, pretraining_documents
from course.build.tokenizer import ENDOFTEXT, IM_END, train_tokenizer
from course.device import pick_device, seed_everything
from course.models import EMBEDDED_MODEL_DIR, count_parameters


@dataclass
class PretrainConfig:
    steps: int = 1500          # optimizer steps
    batch_size: int = 32       # documents per step
    context: int = 256         # longest document kept (longer ones are cut)
    lr: float = 3e-3           # peak AdamW learning rate (tiny models tolerate large ones)
    warmup: int = 50
    weight_decay: float = 0.1
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 384
    qa_fraction: float = 0.8   # share of stories followed by plain-text Q/A (reading practice)
    qa_max: int = 3            # questions after such a story: 1..qa_max
    retell_fraction: float = 0.0  # share of stories followed by a retelling of their facts
    retell_shuffle: int = 0    # 1: retelling sentences in random order
    echo_fraction: float = 0.5  # share of stories followed by a word list and its verbatim repeat (copying practice)
    n_docs: int = 60000
    seed: int = SEED
    threads: int = 0           # torch CPU threads (0 = torch's default)


def corpus(cfg: PretrainConfig, n: int, names: list[str], seed: int) -> list[str]:
    """`n` pretraining documents about `names`, mixed as `cfg` says (training and validation
    differ only in names, count and seed)."""
    return pretraining_documents(n, names, seed, cfg.qa_fraction, cfg.qa_max, cfg.retell_fraction,
                                 bool(cfg.retell_shuffle), cfg.echo_fraction)


def model_config(cfg: PretrainConfig, vocab_size: int) -> Qwen2Config:
    return Qwen2Config(
        vocab_size=vocab_size, hidden_size=cfg.hidden, num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads, num_key_value_heads=cfg.kv_heads,
        intermediate_size=cfg.intermediate, max_position_embeddings=512, rope_theta=10000.0,
        tie_word_embeddings=True, bos_token_id=None, eos_token_id=2, pad_token_id=3)


def pad_rows(docs: list[list[int]], eot: int, pad: int, context: int) -> torch.Tensor:
    """One document per row (+ `eot`), right-padded with `pad` to `context` tokens.

    Rows start at document boundaries on purpose: when a stream is cut into fixed chunks, a
    question at the end of a story often lands in a different row from the story it asks about,
    and the model learns to guess from word frequencies instead of reading (docs/BASE_MODEL.md
    has the measured effect on plain-text place and count questions).
    """
    rows = torch.full((len(docs), context), pad)
    for i, d in enumerate(docs):
        d = [*d, eot][:context]
        rows[i, : len(d)] = torch.tensor(d)
    return rows


def batch_from_rows(rows: torch.Tensor, pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Trim common padding; labels are -100 on padding so it never counts in the loss."""
    width = int((rows != pad).sum(1).max())
    ids = rows[:, :width]
    attn = (ids != pad).long()
    return ids, attn, ids.masked_fill(attn == 0, -100)


def lr_at(step: int, cfg: PretrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def eval_loss(model, rows: torch.Tensor, pad: int, batch_size: int = 64) -> float:
    """Mean next-token loss per predicted token over all rows."""
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(rows), batch_size):
        ids, attn, labels = (t.to(device) for t in batch_from_rows(rows[i:i + batch_size], pad))
        n = int((labels[:, 1:] != -100).sum())
        total += model(input_ids=ids, attention_mask=attn, labels=labels).loss.item() * n
        count += n
    model.train()
    return total / count


def pretrain(cfg: PretrainConfig, out: Path, device: str | None = None) -> dict:
    """Run the whole pipeline and save to `out`. Returns the metrics written to pretrain.json."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    dev = pick_device(device)
    seen, heldout = name_pools(cfg.seed)
    t0 = time.time()
    docs = corpus(cfg, cfg.n_docs, seen, cfg.seed)
    tokenizer = train_tokenizer(docs)
    eot = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    ids = tokenizer(docs, add_special_tokens=False)["input_ids"]
    pad = tokenizer.pad_token_id
    rows = pad_rows(ids, eot, pad, cfg.context)
    val_docs = corpus(cfg, 400, heldout, cfg.seed + 1)
    val_ids = tokenizer(val_docs, add_special_tokens=False)["input_ids"]
    val_rows = pad_rows(val_ids, eot, pad, cfg.context)

    model = Qwen2ForCausalLM(model_config(cfg, len(tokenizer))).to(dev)
    model.generation_config = GenerationConfig(
        eos_token_id=[tokenizer.convert_tokens_to_ids(IM_END), eot],
        pad_token_id=tokenizer.pad_token_id, do_sample=False)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.lr, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(cfg.seed)
    model.train()
    train_tokens = 0
    bar = tqdm(range(cfg.steps), desc="pretrain")
    for step in bar:
        idx = torch.randint(len(rows), (cfg.batch_size,), generator=gen)
        ids, attn, labels = (t.to(dev) for t in batch_from_rows(rows[idx], pad))
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        loss = model(input_ids=ids, attention_mask=attn, labels=labels).loss
        train_tokens += int(attn.sum())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    minutes = (time.time() - t0) / 60
    metrics = {"config": asdict(cfg), "parameters": count_parameters(model),
               "train_tokens": train_tokens,
               "corpus_tokens": int((rows != pad).sum()), "final_train_loss": loss.item(),
               "validation_loss": eval_loss(model, val_rows, pad), "minutes": minutes,
               "device": str(dev), "torch": torch.__version__}
    out.mkdir(parents=True, exist_ok=True)
    model.to("cpu").save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "pretrain.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, value in asdict(PretrainConfig()).items():
        ap.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    ap.add_argument("--out", type=Path, default=EMBEDDED_MODEL_DIR)
    ap.add_argument("--device", default=None)
    args = vars(ap.parse_args(argv))
    out, device = args.pop("out"), args.pop("device")
    metrics = pretrain(PretrainConfig(**args), out, device)
    print(json.dumps({k: v for k, v in metrics.items() if k != "config"}, indent=2))


if __name__ == "__main__":
    main()
