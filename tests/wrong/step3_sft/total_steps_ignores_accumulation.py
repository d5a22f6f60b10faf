"""Bug: steps per epoch computed from the micro-batch size, forgetting accumulation and the
processes: the run is grad_accum_steps * world_size times too long and the schedule too slow."""
EXPECT_LOSE = ["total_steps", "total_steps_hidden"]
EXPECT_MESSAGE = "accumulation"


def _total_steps(self, num_examples, world_size=1):
    if self.max_steps is not None:
        return max(1, self.max_steps)
    per_epoch = num_examples // self.batch_size  # the bug
    if per_epoch < 1:
        raise ValueError("not one batch")
    return max(1, math.ceil(self.num_epochs * per_epoch))


FinetuneConfig.total_steps = _total_steps
