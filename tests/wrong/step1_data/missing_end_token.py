"""Bug: turns are not closed with <|im_end|>, so the model never learns where an answer stops."""
EXPECT_LOSE = ["format_conversation", "format_conversation_hidden"]
EXPECT_MESSAGE = "missing end token"


def format_conversation(messages, tokenizer, add_generation_prompt=False):
    text = "".join(f"{IM_START}{m['role']}\n{m['content']}\n" for m in messages)
    if add_generation_prompt:
        text += f"{IM_START}assistant\n"
    return {"text": text, "input_ids": tokenizer(text, add_special_tokens=False)["input_ids"]}
