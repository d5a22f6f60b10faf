"""Bug: labels are padded with the pad id instead of -100, so the model is trained to predict
padding after every answer (and the loss is dominated by it in batches of mixed length)."""
EXPECT_LOSE = ["collate", "collate_hidden"]
EXPECT_MESSAGE = "padding labels"


def collate(features, pad_token_id, pad_to_multiple_of=None):
    length = max(len(f["input_ids"]) for f in features)
    if pad_to_multiple_of:
        length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    batch = {"input_ids": [], "attention_mask": [], "labels": []}
    for f in features:
        ids = list(f["input_ids"])
        gap = length - len(ids)
        batch["input_ids"].append(ids + [pad_token_id] * gap)
        batch["attention_mask"].append(list(f.get("attention_mask", [1] * len(ids))) + [0] * gap)
        batch["labels"].append(list(f["labels"]) + [pad_token_id] * gap)  # the bug
    return {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}
