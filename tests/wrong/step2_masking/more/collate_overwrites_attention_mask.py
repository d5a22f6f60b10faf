"""Bug: the example's own attention mask is replaced by ones (its own zeros are lost)."""
EXPECT_LOSE = ["collate_hidden"]

_reference_collate = collate


def collate(features, pad_token_id, pad_to_multiple_of=None):
    fresh = [{"input_ids": f["input_ids"], "labels": f["labels"]} for f in features]
    return _reference_collate(fresh, pad_token_id, pad_to_multiple_of)
