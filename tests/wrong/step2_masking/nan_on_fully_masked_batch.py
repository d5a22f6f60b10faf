"""Bug: cross_entropy(reduction="mean") over a batch with no label divides 0 by 0: the loss is
NaN and one such batch destroys the weights."""
EXPECT_LOSE = ["masked_cross_entropy", "masked_cross_entropy_hidden"]
EXPECT_MESSAGE = "NaN"

_reference_masked_cross_entropy = masked_cross_entropy


def masked_cross_entropy(logits, labels, normalization="token"):
    if normalization != "token":
        return _reference_masked_cross_entropy(logits, labels, normalization)
    logits, targets = logits[:, :-1, :], labels[:, 1:]
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                           ignore_index=IGNORE_INDEX)  # the bug: mean over nothing is NaN
