"""The course's figures, one function per plot. Each returns the matplotlib Figure.

In a notebook, assign the result (`fig = length_histogram(...)`): the inline backend shows the
figure once at the end of the cell.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure


def length_histogram(lengths: Sequence[int], max_tokens: int | None = None,
                     too_long: Sequence[int] = (), context: int | None = None,
                     title: str = "Conversation lengths") -> Figure:
    """Histogram of conversation lengths in tokens (ChatML, special tokens included).

    `too_long`: lengths of known over-long samples, drawn in a second colour; `max_tokens`: the
    chosen cut-off (dashed line); `context`: the model's context length (dotted line).
    """
    fig, ax = plt.subplots(figsize=(8, 3.2))
    top = max([*lengths, *too_long, max_tokens or 0, context or 0, 1])
    bins = range(0, top + 10, max(1, top // 60))
    ax.hist(lengths, bins=bins, color="tab:blue", label=f"{len(lengths):,} conversations")
    if len(too_long):
        ax.hist(too_long, bins=bins, color="tab:red", label=f"{len(too_long)} over-long")
    if max_tokens:
        ax.axvline(max_tokens, color="black", linestyle="--", label=f"max_tokens = {max_tokens}")
    if context:
        ax.axvline(context, color="gray", linestyle=":", label=f"model context = {context}")
    ax.set_yscale("log")
    ax.set_xlabel("tokens per conversation (ChatML text)")
    ax.set_ylabel("count (log scale)")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def drop_reasons(counts: Mapping[str, int], total: int, title: str = "Why samples were dropped"
                 ) -> Figure:
    """Horizontal bars: how many samples each cleaning rule dropped, out of `total`."""
    fig, ax = plt.subplots(figsize=(6, 0.45 * max(len(counts), 1) + 1.2))
    names = list(counts)[::-1]
    values = [counts[n] for n in names]
    ax.barh(names, values, color="tab:red")
    for y, v in enumerate(values):
        ax.text(v, y, f" {v}", va="center", fontsize=9)
    kept = total - sum(values)
    ax.set_xlabel(f"samples dropped (kept {kept:,} of {total:,})")
    ax.set_title(title)
    ax.set_xlim(0, max(values + [1]) * 1.2)
    fig.tight_layout()
    return fig


def masking_ablation(res: Mapping, title: str = "What the labels teach") -> Figure:
    """Step 2's experiment (course.experiments.masking_ablation): held-out exact match, answer
    loss and stop rate per label variant (bars), and each variant's training loss (curves)."""
    results = res["results"]
    names = [n for n in results if n != "base"]
    labels = {n: res.get("variants", {}).get(n, n) for n in names}
    colors = dict(zip(names, ("tab:green", "tab:orange", "tab:red", "tab:purple")))
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.4))
    panels = [("exact_match", "held-out exact match", True),
              ("answer_loss", "answer-token loss (lower is better)", False),
              ("stop_rate", "stop rate (<|im_end|> emitted)", True)]
    for ax, (key, name, share) in zip(axes, panels):
        values = [results[n][key] for n in names]
        ax.bar(range(len(names)), values, color=[colors[n] for n in names])
        if "base" in results:
            ax.axhline(results["base"][key], color="gray", linestyle=":", label="base model")
        for x, v in enumerate(values):
            ax.text(x, v, f"{v:.0%}" if share else f"{v:.2f}", ha="center", va="bottom",
                    fontsize=8)
        ax.set_xticks(range(len(names)), names, rotation=15, fontsize=8)
        ax.set_title(name, fontsize=9)
        if share:
            ax.set_ylim(0, 1.08)
    axes[0].legend(fontsize=7, loc="upper right")
    for n in names:
        axes[3].plot(results[n]["train_loss"], color=colors[n], label=labels[n])
    axes[3].set_xlabel("step")
    axes[3].set_title("training loss (over each variant's own labels)", fontsize=9)
    axes[3].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
