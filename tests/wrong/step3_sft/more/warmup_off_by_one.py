"""Variant: warmup counts from 1 ((step + 1) / warmup): the first step already has a learning
rate, and the peak comes one step early."""
EXPECT_LOSE = ["lr_lambda_hidden"]


def lr_lambda(step, warmup_steps, total_steps):
    if step < warmup_steps:
        return float(step + 1) / float(max(1, warmup_steps))
    progress = float(step - warmup_steps) / float(max(1, total_steps - warmup_steps))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
