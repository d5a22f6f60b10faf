"""Bug: log(softmax(x)) instead of log_softmax / cross_entropy: with large logits a probability
underflows to 0 and the loss becomes inf or NaN."""
EXPECT_LOSE = ["masked_cross_entropy_hidden"]


def masked_cross_entropy(logits, labels, normalization="token"):
    logits, targets = logits[:, :-1, :], labels[:, 1:]
    mask = targets != IGNORE_INDEX
    log_probs = torch.log(torch.softmax(logits, dim=-1))  # the bug
    picked = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    per_token = -picked * mask
    counts = mask.sum(dim=1)
    if normalization == "token":
        return per_token.sum() / counts.sum().clamp(min=1)
    has = counts > 0
    return (per_token.sum(dim=1) / counts.clamp(min=1) * has).sum() / has.sum().clamp(min=1)
