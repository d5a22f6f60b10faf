"""Bug: ShareGPT's `from` is used as the role as it is ("human", "gpt")."""
EXPECT_LOSE = ["normalize_record", "normalize_record_hidden"]
EXPECT_MESSAGE = "ShareGPT 'from' values not mapped"

_reference_normalize_record = normalize_record


def normalize_record(record, system_prompt=None):
    if "conversations" in record and "messages" not in record:
        record = {"messages": [{"role": t["from"], "content": t["value"]}
                               for t in record["conversations"]]}
    return _reference_normalize_record(record, system_prompt)
