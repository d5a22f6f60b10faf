"""Bug: the Alpaca keys are looked at before "messages", against the documented order."""
EXPECT_LOSE = ["normalize_record_hidden"]

_reference_normalize_record = normalize_record


def normalize_record(record, system_prompt=None):
    if "instruction" in record:
        record = {k: v for k, v in record.items() if k not in ("messages", "conversations")}
    return _reference_normalize_record(record, system_prompt)
