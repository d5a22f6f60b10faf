"""Bug: roles are not checked: a 'bot' or 'gpt' turn is rendered and silently masked."""
EXPECT_LOSE = ["check_conversation", "check_conversation_hidden"]


def check_conversation(messages, record_id=None):
    for i, turn in enumerate(messages):
        if not isinstance(turn, dict) or "role" not in turn or "content" not in turn:
            raise ValueError(f"record {record_id}: turn {i} is not a dict with role and content")
        if not isinstance(turn["content"], str):
            raise ValueError(f"record {record_id}: turn {i} content is not a str")
    if not any(turn["role"] == "assistant" for turn in messages):
        raise ValueError(f"record {record_id}: no assistant turn")
