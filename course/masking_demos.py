"""Seeing step 2's mask, and what the loss is asked to predict: demonstrations the notebook
shows (the exercise itself is in masking_exercise.py).

    HTML(visualize_labels(enc["input_ids"], enc["labels"], tokenizer))   # trained vs masked
    logits, labels = normalization_example()     # where "token" and "sequence" means disagree
    loss_targets(ids, pre_shifted(labels), tok)  # labels shifted by hand: the wrong task
    library_labels(messages, tokenizer)          # the chat template's mask (the library way)
"""
from __future__ import annotations

import html

import torch
import torch.nn.functional as F

from course.data import IGNORE_INDEX, tokenize_for_sft


def visualize_labels(input_ids, labels, tokenizer) -> str:
    """HTML with one `<span class="trained">` or `<span class="masked">` per token, in order,
    holding the token's text (a newline shown as ↵); hover shows the token id and label.
    In a notebook: `IPython.display.HTML(visualize_labels(enc["input_ids"], enc["labels"], tok))`.
    """
    spans = []
    for token, label in zip([int(t) for t in input_ids], [int(t) for t in labels]):
        trained = label != IGNORE_INDEX
        text = html.escape(tokenizer.decode([token])).replace("\n", "↵\n")
        spans.append(f'<span class="{"trained" if trained else "masked"}" '
                     f'title="id {token}, label {label}" style="background:'
                     f'{"#b7e4c7" if trained else "#e9ecef"};border:1px solid #fff">{text}</span>')
    legend = ('<div><span style="background:#b7e4c7">trained</span> '
              '<span style="background:#e9ecef">masked (-100)</span></div>')
    return f'{legend}<pre style="white-space:pre-wrap;line-height:1.6">{"".join(spans)}</pre>'


def normalization_example(vocab_size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """A toy batch where the two normalizations disagree: (logits (2, 6, V), labels (2, 6)).

    Sequence 0 has a one-token answer the model gets badly wrong (loss 3.0); sequence 1 a
    four-token answer it gets nearly right (0.5 per token). "token": (3.0 + 4 * 0.5) / 5 = 1.0.
    "sequence": (3.0 + 0.5) / 2 = 1.75 -- the short answer's single token weighs 1/2, each
    token of the long answer 1/8, so short answers dominate what the model learns.
    """
    labels = torch.full((2, 6), IGNORE_INDEX)
    labels[0, 5] = 1
    labels[1, 2:6] = torch.tensor([2, 3, 4, 5])
    logits = torch.zeros(2, 6, vocab_size)
    for b, t in zip(*torch.nonzero(labels != IGNORE_INDEX, as_tuple=True)):
        loss = 3.0 if b == 0 else 0.5
        p_right = torch.exp(torch.tensor(-loss))  # log-probabilities as logits: CE is exact
        probs = torch.full((vocab_size,), float((1 - p_right) / (vocab_size - 1)))
        probs[labels[b, t]] = p_right
        logits[b, t - 1] = probs.log()  # the logit one step earlier predicts this label
    return logits, labels


def pre_shifted(labels: torch.Tensor) -> torch.Tensor:
    """The classic mistake: labels shifted by hand (label t := label t + 1, -100 at the end)
    although the model shifts them again. Only for demonstrations."""
    return F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)


def loss_targets(input_ids: list[int], labels: list[int], tokenizer) -> list[tuple[str, str]]:
    """What the loss actually asks, as text: for every labelled position t >= 1, the pair
    (token the model has just read at t - 1, token it must predict = labels[t]). With
    pre-shifted labels each target is the token *after* the next one: the model is taught to
    skip a token, and generates garbled text although its training loss looks fine."""
    ids, labels = [int(t) for t in input_ids], [int(t) for t in labels]
    return [(tokenizer.decode([ids[t - 1]]), tokenizer.decode([labels[t]]))
            for t in range(1, len(labels)) if labels[t] != IGNORE_INDEX]


def double_shift_demo(model, input_ids: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """The model's loss with correct labels and with labels shifted by hand before the model
    shifts them again (a trained model scores the second far worse: it is the wrong task)."""
    with torch.no_grad():
        right = model(input_ids=input_ids, labels=labels).loss.item()
        double = model(input_ids=input_ids, labels=pre_shifted(labels)).loss.item()
    return {"labels as built": right, "labels shifted by hand": double}


def library_labels(messages: list[dict], tokenizer) -> dict[str, list[int]]:
    """The library way: labels from the chat template's assistant mask
    (`course.data.tokenize_for_sft`: `apply_chat_template(..., return_assistant_tokens_mask=True)`
    with `{% generation %}` markers, else character offsets of the answers). Raises ValueError
    if nothing would be trained."""
    enc = tokenize_for_sft(messages, tokenizer)
    if all(t == IGNORE_INDEX for t in enc["labels"]):
        raise ValueError("no assistant token in this conversation: nothing would be trained")
    return enc
