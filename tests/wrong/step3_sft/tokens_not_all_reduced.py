"""Bug: each process divides by its own supervised-token count, not the count over all
processes, so with several processes the summed gradient is world_size times too large (and
processes with fewer answer tokens weigh more)."""
EXPECT_LOSE = ["train_step_hidden"]


def train_step(model, optimizer, scheduler, micro_batches, max_grad_norm):
    model.train()
    optimizer.zero_grad(set_to_none=True)
    n_tokens = sum(supervised_tokens(mb["labels"]) for mb in micro_batches)  # the bug
    denominator = float(max(n_tokens, 1))
    total = 0.0
    for mb in micro_batches:
        loss = token_loss_sum(model, mb)
        (loss / denominator).backward()
        total += loss.item()
    all_reduce_gradients(model)
    grad_norm = torch.nn.utils.clip_grad_norm_(
        unique_trainable(model), max_grad_norm if max_grad_norm is not None else float("inf"))
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    scheduler.step()
    return {"loss": total / denominator, "grad_norm": float(grad_norm), "lr": lr,
            "tokens": int(n_tokens)}
