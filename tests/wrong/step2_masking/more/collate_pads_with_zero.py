"""Bug: input_ids are padded with 0 whatever pad id is asked for (0 is a real token of most
vocabularies)."""
EXPECT_LOSE = ["collate", "collate_hidden"]

_reference_collate = collate


def collate(features, pad_token_id, pad_to_multiple_of=None):
    return _reference_collate(features, 0, pad_to_multiple_of)
