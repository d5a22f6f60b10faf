"""Bug: a full cosine period instead of half: the learning rate falls to 0 halfway through and
climbs back to the peak at the end."""
EXPECT_LOSE = ["lr_lambda", "lr_lambda_hidden"]
EXPECT_MESSAGE = "does not end at 0"


def lr_lambda(step, warmup_steps, total_steps):
    if step < warmup_steps:
        return float(step) / float(max(1, warmup_steps))
    progress = float(step - warmup_steps) / float(max(1, total_steps - warmup_steps))
    return max(0.0, 0.5 * (1.0 + math.cos(2 * math.pi * progress)))  # the bug: 2 pi
