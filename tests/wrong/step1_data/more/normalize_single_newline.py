"""Bug: instruction and input are joined by one newline instead of a blank line."""
EXPECT_LOSE = ["normalize_record", "normalize_record_hidden"]

_reference_normalize_record = normalize_record


def normalize_record(record, system_prompt=None):
    out = _reference_normalize_record(record, system_prompt)
    if "messages" not in record and "conversations" not in record and record.get("input"):
        for turn in out:
            if turn["role"] == "user":
                turn["content"] = record["instruction"] + "\n" + record["input"]
    return out
