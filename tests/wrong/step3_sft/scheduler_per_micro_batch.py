"""Bug: scheduler.step() inside the accumulation loop: the schedule runs grad_accum_steps times
too fast (warmup ends early, the lr reaches 0 a fraction of the way through the run)."""
EXPECT_LOSE = ["train_step", "train_step_hidden"]
EXPECT_MESSAGE = "scheduler stepped per micro-batch"


def train_step(model, optimizer, scheduler, micro_batches, max_grad_norm):
    model.train()
    optimizer.zero_grad(set_to_none=True)
    n_tokens = all_reduce_sum(sum(supervised_tokens(mb["labels"]) for mb in micro_batches))
    denominator = float(max(n_tokens.item(), 1.0))
    total = 0.0
    lr = optimizer.param_groups[0]["lr"]
    for mb in micro_batches:
        loss = token_loss_sum(model, mb)
        (loss / denominator).backward()
        total += loss.item()
        scheduler.step()  # the bug: once per micro-batch
    all_reduce_gradients(model)
    grad_norm = torch.nn.utils.clip_grad_norm_(
        unique_trainable(model), max_grad_norm if max_grad_norm is not None else float("inf"))
    optimizer.step()
    return {"loss": total / denominator, "grad_norm": float(grad_norm), "lr": lr,
            "tokens": int(n_tokens)}
