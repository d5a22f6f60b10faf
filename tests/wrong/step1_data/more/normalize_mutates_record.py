"""Bug: a messages record's own list is returned, so adding a system turn changes the record."""
EXPECT_LOSE = ["normalize_record_hidden"]

_reference_normalize_record = normalize_record


def normalize_record(record, system_prompt=None):
    if "messages" not in record:
        return _reference_normalize_record(record, system_prompt)
    messages = record["messages"]
    if system_prompt and not (messages and messages[0]["role"] == "system"):
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages
