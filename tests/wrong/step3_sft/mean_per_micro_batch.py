"""Bug: under gradient accumulation each micro-batch is divided by its own token count and the
means are averaged, so tokens of short micro-batches weigh more than those of long ones (and a
micro-batch without labels gives NaN)."""
EXPECT_LOSE = ["train_step", "train_step_hidden"]
EXPECT_MESSAGE = "normalised per micro-batch"


def train_step(model, optimizer, scheduler, micro_batches, max_grad_norm):
    model.train()
    optimizer.zero_grad(set_to_none=True)
    n_tokens = all_reduce_sum(sum(supervised_tokens(mb["labels"]) for mb in micro_batches))
    total = 0.0
    for mb in micro_batches:
        loss = token_loss_sum(model, mb) / supervised_tokens(mb["labels"])  # the bug
        (loss / len(micro_batches)).backward()
        total += loss.item() / len(micro_batches)
    all_reduce_gradients(model)
    grad_norm = torch.nn.utils.clip_grad_norm_(
        unique_trainable(model), max_grad_norm if max_grad_norm is not None else float("inf"))
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    scheduler.step()
    return {"loss": total, "grad_norm": float(grad_norm), "lr": lr, "tokens": int(n_tokens)}
