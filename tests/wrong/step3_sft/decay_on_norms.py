"""Bug: weight decay on every parameter, norms and biases included: it pulls the norm scales
towards 0 instead of their neutral 1."""
EXPECT_LOSE = ["param_groups", "param_groups_hidden"]
EXPECT_MESSAGE = "weight decay on norms"


def param_groups(model, weight_decay):
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": params, "weight_decay": weight_decay},  # the bug: one group for all
            {"params": [], "weight_decay": 0.0}]
