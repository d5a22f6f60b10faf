"""Variant: reports the gradient norm after clipping (always <= max_grad_norm), which hides the
spikes the grad-norm plot is there to show."""
EXPECT_LOSE = ["train_step_hidden"]

_reference_train_step = train_step


def train_step(model, optimizer, scheduler, micro_batches, max_grad_norm):
    stats = _reference_train_step(model, optimizer, scheduler, micro_batches, max_grad_norm)
    if max_grad_norm is not None:
        stats["grad_norm"] = min(stats["grad_norm"], max_grad_norm)
    return stats
