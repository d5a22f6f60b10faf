"""Variant: evaluate leaves the model in eval mode: training goes on without dropout."""
EXPECT_LOSE = ["evaluate_hidden"]


def evaluate(model, batches):
    model.eval()
    loss_sum, tokens = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            loss_sum += token_loss_sum(model, batch).item()
            tokens += supervised_tokens(batch["labels"])
    total, count = all_reduce_sum(loss_sum), all_reduce_sum(tokens)
    loss = float(total / count) if count > 0 else 0.0
    return {"loss": loss, "perplexity": math.exp(loss), "tokens": int(count)}
