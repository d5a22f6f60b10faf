"""Bug: the attention mask is 1 on padding too, so real tokens may attend to pad tokens (and
left-padded generation goes wrong)."""
EXPECT_LOSE = ["collate", "collate_hidden"]
EXPECT_MESSAGE = "attention mask on padding"

_reference_collate = collate


def collate(features, pad_token_id, pad_to_multiple_of=None):
    batch = _reference_collate(features, pad_token_id, pad_to_multiple_of)
    batch["attention_mask"] = torch.ones_like(batch["input_ids"])  # the bug
    return batch
