"""Bug: the total counts only trainable parameters, so LoRA looks like 100 % of the model."""
EXPECT_LOSE = ["count_parameters_hidden", "count_parameters"]


def count_parameters(model):
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, trainable
