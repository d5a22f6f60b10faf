"""Bug: padding is found by comparing ids with the pad id. When the pad id equals EOS (many
tokenizers pad with EOS), every real end token is masked too and the model never learns to
stop."""
EXPECT_LOSE = ["collate", "collate_hidden"]
EXPECT_MESSAGE = "EOS masked"

_reference_collate = collate


def collate(features, pad_token_id, pad_to_multiple_of=None):
    batch = _reference_collate(features, pad_token_id, pad_to_multiple_of)
    batch["labels"][batch["input_ids"] == pad_token_id] = IGNORE_INDEX  # the bug
    return batch
