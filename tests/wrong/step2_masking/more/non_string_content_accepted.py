"""Bug: contents are not type-checked; None or 42 crashes later, far from the record."""
EXPECT_LOSE = ["check_conversation", "check_conversation_hidden"]


def check_conversation(messages, record_id=None):
    for i, turn in enumerate(messages):
        if not isinstance(turn, dict) or "role" not in turn or "content" not in turn:
            raise ValueError(f"record {record_id}: turn {i} is not a dict with role and content")
        if turn["role"] not in ROLES:
            raise ValueError(f"record {record_id}: turn {i} has unknown role {turn['role']!r}")
    if not any(turn["role"] == "assistant" for turn in messages):
        raise ValueError(f"record {record_id}: no assistant turn")
