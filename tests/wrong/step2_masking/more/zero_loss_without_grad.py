"""Bug: a batch without labels returns a fresh torch.tensor(0.0): finite, but not connected to
the model, so loss.backward() raises in the training loop."""
EXPECT_LOSE = ["masked_cross_entropy", "masked_cross_entropy_hidden"]

_reference_masked_cross_entropy = masked_cross_entropy


def masked_cross_entropy(logits, labels, normalization="token"):
    if not (labels[:, 1:] != IGNORE_INDEX).any():
        return torch.tensor(0.0)
    return _reference_masked_cross_entropy(logits, labels, normalization)
