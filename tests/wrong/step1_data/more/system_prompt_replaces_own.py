"""Bug: the system_prompt argument is added even when the record has its own system turn."""
EXPECT_LOSE = ["normalize_record", "normalize_record_hidden"]

_reference_normalize_record = normalize_record


def normalize_record(record, system_prompt=None):
    messages = _reference_normalize_record(record)
    if system_prompt:
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages
