"""Bug: evaluation without torch.no_grad(): the whole graph is kept for nothing (memory, time)."""
EXPECT_LOSE = ["evaluate", "evaluate_hidden"]
EXPECT_MESSAGE = "without torch.no_grad()"


def evaluate(model, batches):
    was_training = model.training
    model.eval()
    loss_sum, tokens = 0.0, 0
    for batch in batches:  # the bug: gradients enabled
        loss_sum += token_loss_sum(model, batch).item()
        tokens += supervised_tokens(batch["labels"])
    model.train(was_training)
    total, count = all_reduce_sum(loss_sum), all_reduce_sum(tokens)
    loss = float(total / count) if count > 0 else 0.0
    return {"loss": loss, "perplexity": math.exp(loss), "tokens": int(count)}
