"""Bug: parameters are listed without removing duplicates, so tied input/output embeddings
count twice and the total is larger than peft's."""
EXPECT_LOSE = ["count_parameters_hidden", "count_parameters"]
EXPECT_MESSAGE = "counted twice"


def count_parameters(model):
    params = [p for _, p in model.named_parameters(remove_duplicate=False)]
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
