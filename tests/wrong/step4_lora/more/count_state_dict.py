"""Bug: parameters counted from state_dict(), which repeats tied tensors and includes buffers
(and whose tensors never require grad, so nothing counts as trainable)."""
EXPECT_LOSE = ["count_parameters_hidden", "count_parameters"]


def count_parameters(model):
    state = model.state_dict()
    return (sum(t.numel() for t in state.values() if t.requires_grad),
            sum(t.numel() for t in state.values()))
