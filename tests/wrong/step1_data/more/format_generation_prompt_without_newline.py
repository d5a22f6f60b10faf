"""Bug: the generation prompt lacks its newline, so answers start right after "assistant"."""
EXPECT_LOSE = ["format_conversation", "format_conversation_hidden"]


def format_conversation(messages, tokenizer, add_generation_prompt=False):
    text = "".join(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in messages)
    if add_generation_prompt:
        text += f"{IM_START}assistant"
    return {"text": text, "input_ids": tokenizer(text, add_special_tokens=False)["input_ids"]}
