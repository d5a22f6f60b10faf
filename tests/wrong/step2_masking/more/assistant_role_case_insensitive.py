"""Bug: roles are compared case-insensitively, so 'Assistant' passes the check although the
chat template and the mask only know 'assistant'."""
EXPECT_LOSE = ["check_conversation_hidden"]


def check_conversation(messages, record_id=None):
    for i, turn in enumerate(messages):
        if not isinstance(turn, dict) or "role" not in turn or "content" not in turn:
            raise ValueError(f"record {record_id}: turn {i} is not a dict with role and content")
        if str(turn["role"]).lower() not in ROLES:  # the bug: .lower()
            raise ValueError(f"record {record_id}: turn {i} has unknown role {turn['role']!r}")
        if not isinstance(turn["content"], str):
            raise ValueError(f"record {record_id}: turn {i} content is not a str")
    if not any(str(turn["role"]).lower() == "assistant" for turn in messages):
        raise ValueError(f"record {record_id}: no assistant turn")
