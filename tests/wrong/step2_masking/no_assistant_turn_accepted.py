"""Bug: a conversation without an assistant turn is accepted and becomes a silently all-masked
sample."""
EXPECT_LOSE = ["check_conversation", "check_conversation_hidden"]
EXPECT_MESSAGE = "no assistant turn"


def check_conversation(messages, record_id=None):
    for i, turn in enumerate(messages):
        if not isinstance(turn, dict) or "role" not in turn or "content" not in turn:
            raise ValueError(f"record {record_id}: turn {i} is not a dict with role and content")
        if turn["role"] not in ROLES:
            raise ValueError(f"record {record_id}: turn {i} has unknown role {turn['role']!r}")
        if not isinstance(turn["content"], str):
            raise ValueError(f"record {record_id}: turn {i} content is not a str")
    # the bug: no check that an assistant speaks
