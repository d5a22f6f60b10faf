"""Bug: the Alpaca input (the story) is dropped; only the instruction reaches the user turn."""
EXPECT_LOSE = ["normalize_record", "normalize_record_hidden"]
EXPECT_MESSAGE = "Alpaca input lost"

_reference_normalize_record = normalize_record


def normalize_record(record, system_prompt=None):
    if "instruction" in record and "messages" not in record and "conversations" not in record:
        record = dict(record, input="")
    return _reference_normalize_record(record, system_prompt)
