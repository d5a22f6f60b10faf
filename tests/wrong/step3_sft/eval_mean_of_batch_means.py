"""Bug: the validation loss is the mean of per-batch means, so a small last batch weighs as much
as a full one."""
EXPECT_LOSE = ["evaluate", "evaluate_hidden"]
EXPECT_MESSAGE = "mean of per-batch means"


def evaluate(model, batches):
    was_training = model.training
    model.eval()
    means, tokens = [], 0
    with torch.no_grad():
        for batch in batches:
            n = supervised_tokens(batch["labels"])
            means.append(token_loss_sum(model, batch).item() / max(n, 1))  # the bug
            tokens += n
    model.train(was_training)
    loss = sum(means) / max(len(means), 1)
    return {"loss": loss, "perplexity": math.exp(loss), "tokens": tokens}
