"""Run a few steps of the reference SFT loop and write what happened as JSON (rank 0).

    python tests/library/step3_distributed_worker.py OUT.json                       # one process
    torchrun --standalone --nproc_per_node 2 tests/library/step3_distributed_worker.py OUT.json

Env WORKER_BATCH: sequences per micro-batch per process (8 for one process, 4 for two: the same
global batch). Used by tests/library/test_step3_library.py; not collected by pytest.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile

import torch


def main(out: str) -> None:
    torch.set_num_threads(1)
    from course.data import load_split
    from course.grading import load_reference
    from course.models import load_base_model, load_tokenizer

    sx = load_reference("step3_sft", "sft_exercise")
    rank, world_size = sx.init_distributed("cpu")  # gloo, even on a CUDA machine
    tok = load_tokenizer()
    rows = load_split("validation")  # small and quick to load: the split does not matter here
    train = sx.tokenize_split(rows.select(range(16, 500)), tok, 256)
    train = sorted(train, key=lambda e: len(e["input_ids"]))[:64]
    val = sx.tokenize_split(rows.select(range(16)), tok, 256)
    model = load_base_model(device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = sx.FinetuneConfig(learning_rate=2e-3, max_steps=4, warmup_steps=1,
                                batch_size=int(os.environ["WORKER_BATCH"]), grad_accum_steps=2,
                                eval_every=0, shuffle=True, seed=0,
                                output_dir=os.path.join(tmp, f"run{rank}"))
        result = sx.train(model, tok, train, val, cfg, progress=False)
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    if rank == 0:
        with open(out, "w") as fh:
            json.dump({"world_size": world_size, "losses": [r["loss"] for r in result.train],
                       "tokens": [r["tokens"] for r in result.train],
                       "val_loss": result.evals[-1]["loss"],
                       "weights": flat[::97].tolist()}, fh)
    if world_size > 1:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
