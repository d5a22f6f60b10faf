"""Bug: the generation prompt is appended twice, so at inference the model is asked to answer
after an empty assistant turn header."""
EXPECT_LOSE = ["format_conversation", "format_conversation_hidden"]
EXPECT_MESSAGE = "generation prompt added twice"

_reference_format_conversation = format_conversation


def format_conversation(messages, tokenizer, add_generation_prompt=False):
    out = _reference_format_conversation(messages, tokenizer, add_generation_prompt)
    if not add_generation_prompt:
        return out
    text = out["text"] + f"{IM_START}assistant\n"
    return {"text": text, "input_ids": tokenizer(text, add_special_tokens=False)["input_ids"]}
