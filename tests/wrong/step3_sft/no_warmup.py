"""Bug: no warmup: the first steps run at the full learning rate while AdamW's second-moment
estimates are still noise, the classic cause of an early loss spike."""
EXPECT_LOSE = ["lr_lambda", "lr_lambda_hidden"]
EXPECT_MESSAGE = "no warmup"


def lr_lambda(step, warmup_steps, total_steps):
    progress = float(step) / float(max(1, total_steps))  # the bug: cosine from step 0
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
