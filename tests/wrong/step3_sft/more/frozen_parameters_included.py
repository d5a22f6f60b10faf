"""Variant: frozen parameters are handed to the optimizer too (step 4's LoRA would then decay
the frozen base weights)."""
EXPECT_LOSE = ["param_groups_hidden"]


def param_groups(model, weight_decay):
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]
