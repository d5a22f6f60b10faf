"""Bug: masked positions count as zero losses in the mean, so the loss shrinks with the share of
prompt and padding in a batch instead of measuring the answers."""
EXPECT_LOSE = ["masked_cross_entropy", "masked_cross_entropy_hidden"]
EXPECT_MESSAGE = "divides by every position"

_reference_masked_cross_entropy = masked_cross_entropy


def masked_cross_entropy(logits, labels, normalization="token"):
    if normalization != "token":
        return _reference_masked_cross_entropy(logits, labels, normalization)
    logits, targets = logits[:, :-1, :], labels[:, 1:]
    per_token = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                                ignore_index=IGNORE_INDEX, reduction="none")
    return per_token.sum() / max(per_token.numel(), 1)  # the bug: not the labelled count
