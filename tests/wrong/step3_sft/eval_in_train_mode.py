"""Bug: evaluation in train mode: dropout stays on, so the validation loss is noisy and too high."""
EXPECT_LOSE = ["evaluate", "evaluate_hidden"]
EXPECT_MESSAGE = "in train mode"


def evaluate(model, batches):
    loss_sum, tokens = 0.0, 0
    with torch.no_grad():  # the bug: no model.eval()
        for batch in batches:
            loss_sum += token_loss_sum(model, batch).item()
            tokens += supervised_tokens(batch["labels"])
    total, count = all_reduce_sum(loss_sum), all_reduce_sum(tokens)
    loss = float(total / count) if count > 0 else 0.0
    return {"loss": loss, "perplexity": math.exp(loss), "tokens": int(count)}
