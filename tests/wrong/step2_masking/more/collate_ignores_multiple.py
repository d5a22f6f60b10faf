"""Bug: pad_to_multiple_of is ignored (pads to the longest example only)."""
EXPECT_LOSE = ["collate", "collate_hidden"]

_reference_collate = collate


def collate(features, pad_token_id, pad_to_multiple_of=None):
    return _reference_collate(features, pad_token_id)
