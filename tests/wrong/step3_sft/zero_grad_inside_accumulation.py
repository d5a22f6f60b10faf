"""Bug: zero_grad inside the accumulation loop: every micro-batch wipes the gradients of the
ones before it, so only the last micro-batch is learned from."""
EXPECT_LOSE = ["train_step", "train_step_hidden"]
EXPECT_MESSAGE = "zero_grad inside the accumulation loop"


def train_step(model, optimizer, scheduler, micro_batches, max_grad_norm):
    model.train()
    n_tokens = all_reduce_sum(sum(supervised_tokens(mb["labels"]) for mb in micro_batches))
    denominator = float(max(n_tokens.item(), 1.0))
    total = 0.0
    for mb in micro_batches:
        optimizer.zero_grad(set_to_none=True)  # the bug: inside the loop
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
