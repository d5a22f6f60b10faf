"""Variant: returns the loss and the token count as the float64 tensors `all_reduce_sum` gives
back, not as Python numbers; the driver's JSON metrics log cannot write them."""
EXPECT_LOSE = ["train_step", "train_step_hidden"]
EXPECT_MESSAGE = "all_reduce_sum returns a float64 tensor"

_reference_train_step = train_step


def train_step(model, optimizer, scheduler, micro_batches, max_grad_norm):
    stats = _reference_train_step(model, optimizer, scheduler, micro_batches, max_grad_norm)
    stats["loss"] = torch.tensor(stats["loss"], dtype=torch.float64)
    stats["tokens"] = torch.tensor(float(stats["tokens"]), dtype=torch.float64)
    return stats
