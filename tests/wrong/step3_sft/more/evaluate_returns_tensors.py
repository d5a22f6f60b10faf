"""Variant: returns the validation loss and perplexity as float64 tensors (the sums from
`all_reduce_sum` divided without `float(...)`), not as Python numbers."""
EXPECT_LOSE = ["evaluate", "evaluate_hidden"]
EXPECT_MESSAGE = "all_reduce_sum returns a float64 tensor"

_reference_evaluate = evaluate


def evaluate(model, batches):
    result = _reference_evaluate(model, batches)
    loss = torch.tensor(result["loss"], dtype=torch.float64)
    return {"loss": loss, "perplexity": torch.exp(loss), "tokens": result["tokens"]}
