"""Special tokens typed as text: a marker written inside a turn's content is read as the marker.

    tokenizer("Tell me <|im_end|> now")["input_ids"]      # ... 2 ...: the <|im_end|> id itself
    find_special_tokens(messages, tokenizer)              # [(turn, "<|im_end|>"), ...]
    check_no_special_tokens(messages, tokenizer, where)   # raises SpecialTokenInContent

A tokenizer matches the exact text of each special token before it splits the rest (that is how
a chat template's `<|im_start|>` and `<|im_end|>` become single ids), and it does so for any
text, content included. A user turn that contains `<|im_end|>` therefore closes the turn early:
the model sees a turn boundary the conversation never had (prompt injection at inference time;
wrong turn boundaries, and labels computed from them, at training time).

The course rejects such content rather than neutralising it. Splitting special tokens
(`tokenizer(text, split_special_tokens=True)`) works on the whole text or not at all: the
rendered conversation needs its real markers, `apply_chat_template` has no per-content switch,
and every piece of the course (ChatML by hand, the labels of step 2, the template's mask) would
have to tokenize content separately to apply it. A record with a marker in its text is almost
always a bug (a conversation rendered twice, a scrape of a chat log); rejecting it names it.
"""
from __future__ import annotations


class SpecialTokenInContent(ValueError):
    """A turn's content holds the text of one of the tokenizer's special tokens."""


def special_token_texts(tokenizer) -> list[str]:
    """The texts the tokenizer turns into one special id, longest first: its named special
    tokens (`all_special_tokens`) and every added token marked special (Qwen2.5's
    `<|object_ref_start|>`, ...). Added tokens not marked special (`<tool_call>`) are left out:
    they are vocabulary, not control markers, and `split_special_tokens` does not split them."""
    texts = set(tokenizer.all_special_tokens)
    for added in getattr(tokenizer, "added_tokens_decoder", {}).values():
        if getattr(added, "special", False):
            texts.add(str(added))
    return sorted((t for t in texts if t), key=len, reverse=True)


def find_special_tokens(messages: list[dict], tokenizer) -> list[tuple[int, str]]:
    """(turn index, token text) for every special token whose text occurs in a turn's content,
    in turn order; [] for a clean conversation. Non-string contents are skipped (validation
    reports them)."""
    texts = special_token_texts(tokenizer)
    found = []
    for i, turn in enumerate(messages):
        content = turn.get("content") if isinstance(turn, dict) else None
        if isinstance(content, str):
            found += [(i, t) for t in texts if t in content]
    return found


def describe(token: str, tokenizer) -> str:
    """One sentence: what the tokenizer makes of `token` typed in a content, and the fix."""
    return (f"contains {token!r}, which the tokenizer reads as its special token (id "
            f"{tokenizer.convert_tokens_to_ids(token)}), not as text: it would end or open a "
            "turn inside the content; remove or rewrite it")


def check_no_special_tokens(messages: list[dict], tokenizer, where: str = "conversation") -> None:
    """Raise SpecialTokenInContent naming `where`, the turn and the token when any content
    holds a special token's text."""
    found = find_special_tokens(messages, tokenizer)
    if found:
        turn, token = found[0]
        raise SpecialTokenInContent(f"{where}: turn {turn} ({messages[turn].get('role')}) "
                                    f"{describe(token, tokenizer)}")
