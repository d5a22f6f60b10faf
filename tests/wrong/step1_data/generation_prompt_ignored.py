"""Bug: add_generation_prompt is ignored, so at inference the model is never asked to answer."""
EXPECT_LOSE = ["format_conversation", "format_conversation_hidden"]
EXPECT_MESSAGE = "add_generation_prompt=True must end"


def format_conversation(messages, tokenizer, add_generation_prompt=False):
    text = "".join(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in messages)
    return {"text": text, "input_ids": tokenizer(text, add_special_tokens=False)["input_ids"]}
