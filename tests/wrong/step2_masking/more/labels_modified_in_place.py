"""Bug: -100 labels are overwritten in place (to gather with them), so the caller's labels lose
their mask: the next loss on the same batch trains on every token."""
EXPECT_LOSE = ["masked_cross_entropy_hidden"]


def masked_cross_entropy(logits, labels, normalization="token"):
    mask = labels[:, 1:] != IGNORE_INDEX
    labels[labels == IGNORE_INDEX] = 0  # the bug: modifies the caller's tensor
    log_probs = torch.log_softmax(logits[:, :-1, :].float(), dim=-1)
    per_token = -log_probs.gather(-1, labels[:, 1:].unsqueeze(-1)).squeeze(-1) * mask
    counts = mask.sum(dim=1)
    if normalization == "token":
        return per_token.sum() / counts.sum().clamp(min=1)
    has = counts > 0
    return (per_token.sum(dim=1) / counts.clamp(min=1) * has).sum() / has.sum().clamp(min=1)
