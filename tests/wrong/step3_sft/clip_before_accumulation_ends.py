"""Bug: the gradient is clipped after every micro-batch instead of once after accumulation, so
the clipped sum is not the clipped full-batch gradient."""
EXPECT_LOSE = ["train_step", "train_step_hidden"]
EXPECT_MESSAGE = "clipped before accumulation ends"


def train_step(model, optimizer, scheduler, micro_batches, max_grad_norm):
    model.train()
    optimizer.zero_grad(set_to_none=True)
    n_tokens = all_reduce_sum(sum(supervised_tokens(mb["labels"]) for mb in micro_batches))
    denominator = float(max(n_tokens.item(), 1.0))
    total = 0.0
    clip = max_grad_norm if max_grad_norm is not None else float("inf")
    for mb in micro_batches:
        loss = token_loss_sum(model, mb)
        (loss / denominator).backward()
        total += loss.item()
        grad_norm = torch.nn.utils.clip_grad_norm_(unique_trainable(model), clip)  # the bug
    all_reduce_gradients(model)
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    scheduler.step()
    return {"loss": total / denominator, "grad_norm": float(grad_norm), "lr": lr,
            "tokens": int(n_tokens)}
