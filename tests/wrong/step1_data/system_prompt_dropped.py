"""Bug: system turns are dropped and the system_prompt argument is ignored."""
EXPECT_LOSE = ["normalize_record", "normalize_record_hidden"]
EXPECT_MESSAGE = "dropped system prompt"


def normalize_record(record, system_prompt=None):
    if "messages" in record:
        turns = [(m["role"], m["content"]) for m in record["messages"]]
    elif "conversations" in record:
        turns = [(SHAREGPT_ROLES[t["from"]], t["value"]) for t in record["conversations"]]
    else:
        user = record["instruction"]
        if record.get("input"):
            user = f"{user}\n\n{record['input']}"
        turns = [("user", user), ("assistant", record["output"])]
    return [{"role": r, "content": c} for r, c in turns if r != "system"]
