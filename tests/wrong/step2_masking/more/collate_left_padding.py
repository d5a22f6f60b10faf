"""Bug: padding on the left (as for generation), not on the right like the library collator."""
EXPECT_LOSE = ["collate", "collate_hidden"]


def collate(features, pad_token_id, pad_to_multiple_of=None):
    length = max(len(f["input_ids"]) for f in features)
    if pad_to_multiple_of:
        length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    batch = {"input_ids": [], "attention_mask": [], "labels": []}
    for f in features:
        ids = list(f["input_ids"])
        gap = length - len(ids)
        batch["input_ids"].append([pad_token_id] * gap + ids)
        batch["attention_mask"].append([0] * gap + list(f.get("attention_mask", [1] * len(ids))))
        batch["labels"].append([IGNORE_INDEX] * gap + list(f["labels"]))
    return {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}
