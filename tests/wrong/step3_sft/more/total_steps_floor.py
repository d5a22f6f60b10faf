"""Variant: a fractional number of epochs is rounded down (0.01 epoch gives 0 steps)."""
EXPECT_LOSE = ["total_steps_hidden"]


def _total_steps(self, num_examples, world_size=1):
    if self.max_steps is not None:
        return self.max_steps
    per_epoch = num_examples // self.global_batch_size(world_size)
    if per_epoch < 1:
        raise ValueError("not one batch")
    return int(self.num_epochs * per_epoch)


FinetuneConfig.total_steps = _total_steps
