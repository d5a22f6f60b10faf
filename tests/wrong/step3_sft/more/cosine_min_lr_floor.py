"""Variant: the cosine decays to 10 % of the peak instead of 0 (another schedule, not
get_cosine_schedule_with_warmup)."""
EXPECT_LOSE = ["lr_lambda_hidden"]


def lr_lambda(step, warmup_steps, total_steps):
    if step < warmup_steps:
        return float(step) / float(max(1, warmup_steps))
    progress = float(step - warmup_steps) / float(max(1, total_steps - warmup_steps))
    return 0.1 + 0.9 * max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
