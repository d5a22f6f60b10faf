"""Bug: no newline after <|im_end|>, so turns are glued together ("<|im_end|><|im_start|>")."""
EXPECT_LOSE = ["format_conversation", "format_conversation_hidden"]
EXPECT_MESSAGE = "wrong separator"


def format_conversation(messages, tokenizer, add_generation_prompt=False):
    text = "".join(f"{IM_START}{m['role']}\n{m['content']}{IM_END}" for m in messages)
    if add_generation_prompt:
        text += f"{IM_START}assistant\n"
    return {"text": text, "input_ids": tokenizer(text, add_special_tokens=False)["input_ids"]}
