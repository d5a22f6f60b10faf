"""Variant: reports the learning rate of the next step (read after scheduler.step())."""
EXPECT_LOSE = ["train_step_hidden"]

_reference_train_step = train_step


def train_step(model, optimizer, scheduler, micro_batches, max_grad_norm):
    stats = _reference_train_step(model, optimizer, scheduler, micro_batches, max_grad_norm)
    stats["lr"] = optimizer.param_groups[0]["lr"]
    return stats
