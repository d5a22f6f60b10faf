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


def _human(v: float, _=None) -> str:
    """1312896 -> 1.31M, 77824 -> 77.8K, 12.5 -> 12.5: axis labels without scientific notation."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(v) >= size:
            return f"{v / size:.3g}{suffix}"
    return f"{v:.3g}"


def _percent_axis(ax, values: Sequence[float]) -> None:
    """A share axis scaled to its data (not always 0-100 %), labelled in percent."""
    top = max([v for v in values if v is not None] + [0.05])
    ax.set_ylim(0, min(1.0, top * 1.3) if top < 0.75 else 1.08)
    digits = 0 if top >= 0.1 else 1
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.{digits}%}"))


def _smooth(values: Sequence[float], k: int = 5) -> list[float]:
    return [sum(values[max(0, j - k + 1):j + 1]) / len(values[max(0, j - k + 1):j + 1])
            for j in range(len(values))]


def masking_ablation(res: Mapping, title: str = "What the labels teach") -> Figure:
    """Step 2's experiment (course.masking_ablation). Top: held-out exact match,
    stop rate, the share of conversations after which the model writes a user turn of its own,
    and the loss on held-out answer and prompt tokens (bars, one per variant; dotted: the base
    model). Bottom: every variant's training loss split into its answer tokens and its prompt
    tokens, measured in the same forward pass (smoothed over 5 steps)."""
    results = res["results"]
    names = [n for n in results if n != "base"]
    colors = dict(zip(names, ("tab:green", "tab:orange", "tab:red", "tab:purple")))
    fig = plt.figure(figsize=(13, 6.2))
    grid = fig.add_gridspec(2, 10)
    top = [fig.add_subplot(grid[0, 2 * i:2 * i + 2]) for i in range(5)]
    panels = [("exact_match", "held-out exact match", True),
              ("stop_rate", "stop rate (<|im_end|> emitted)", True),
              ("writes_user_turn", "writes a user turn\nwhen made to go on", True),
              ("answer_loss", "held-out loss per\nanswer token", False),
              ("prompt_loss", "held-out loss per\nprompt token", False)]

    def value(r: Mapping, key: str):
        return r.get("continuation", {}).get(key) if key == "writes_user_turn" else r.get(key)

    for ax, (key, name, share) in zip(top, panels):
        values = [value(results[n], key) for n in names]
        shown = [v if v is not None else 0.0 for v in values]
        ax.bar(range(len(names)), shown, color=[colors[n] for n in names])
        base = value(results["base"], key) if "base" in results else None
        if base is not None:
            ax.axhline(base, color="gray", linestyle=":", label="base model")
        for x, v in enumerate(values):
            if v is not None:
                ax.text(x, v, f"{v:.0%}" if share else f"{v:.2f}", ha="center",
                        va="bottom", fontsize=8)
        ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
        ax.set_title(name, fontsize=9)
        if share:
            _percent_axis(ax, shown + ([base] if base is not None else []))
        else:
            ax.set_ylim(0, max(shown + ([base] if base is not None else [0])) * 1.2 or 1)
    top[0].legend(fontsize=7, loc="upper left")
    bottom = [fig.add_subplot(grid[1, 0:5]), fig.add_subplot(grid[1, 5:10])]
    for ax, part, name in ((bottom[0], 0, "answer tokens"), (bottom[1], 1, "prompt tokens")):
        for n in names:
            split = results[n].get("train_split") or []
            if split:
                ax.plot(_smooth([s[part] for s in split]), color=colors[n], label=n,
                        linewidth=2 if n == "assistant_only" else 1.3)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss per token")
        ax.set_title(f"training batches: loss on the {name}", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# --- step 4: full fine-tuning vs LoRA --------------------------------------------------------------
def loss_curves(curves: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]],
                title: str = "Training and validation loss") -> Figure:
    """One colour per run: the training loss per step (thin, smoothed over 5 steps) and the
    validation loss (markers). `curves`: {run name: {"train": [(step, loss)], "val": [...]}}."""
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for i, (name, curve) in enumerate(curves.items()):
        color = f"C{i}"
        train = list(curve.get("train", []))
        if train:
            steps, losses = zip(*train)
            k = min(5, len(losses))
            smooth = [sum(losses[max(0, j - k + 1):j + 1]) / len(losses[max(0, j - k + 1):j + 1])
                      for j in range(len(losses))]
            ax.plot(steps, smooth, color=color, alpha=0.6, linewidth=1, label=f"{name}: train")
        val = list(curve.get("val", []))
        if val:
            steps, losses = zip(*val)
            ax.plot(steps, losses, color=color, marker="o", linewidth=2,
                    label=f"{name}: validation")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy per answer token")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def rank_sweep(ranks: Sequence[int], trainable: Sequence[int], exact_match: Sequence[float],
               val_loss: Sequence[float], full: tuple[int, float, float] | None = None,
               title: str = "LoRA rank sweep: quality vs trainable parameters") -> Figure:
    """Exact match (left) and final validation loss (right) against trainable parameters (log
    scale), each point labelled with its rank; `full` = (trainable, exact match, val loss) of
    full fine-tuning, drawn as a star and a dashed line."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, values, label, j in ((axes[0], exact_match, "held-out exact match", 1),
                                 (axes[1], val_loss, "final validation loss", 2)):
        ax.plot(trainable, values, marker="o", color="tab:orange", label="LoRA")
        for k, (r, x, y) in enumerate(zip(ranks, trainable, values)):
            ax.annotate(f"r={r}", (x, y), textcoords="offset points", fontsize=8,
                        xytext=(4, 6 if k % 2 == 0 else -12))
        if full is not None:
            ax.scatter([full[0]], [full[j]], marker="*", s=140, color="tab:blue",
                       label="full fine-tuning", zorder=3)
            ax.axhline(full[j], color="tab:blue", linestyle="--", linewidth=1)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(plt.FuncFormatter(_human))
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_xlabel("trainable parameters (log scale)")
        ax.set_ylabel(label)
        ax.legend(fontsize=8, loc="best")
        ax.margins(y=0.2)
    _percent_axis(axes[0], list(exact_match) + ([full[1]] if full is not None else []))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def cost_bars(names: Sequence[str], metrics: Mapping[str, Sequence[float]],
              title: str = "What each run costs") -> Figure:
    """One small bar chart per metric ({"trainable parameters": [per run], ...}), runs side by
    side, each bar labelled with its ratio to the first run."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.3 * len(metrics) + 0.5, 3.0))
    axes = [axes] if len(metrics) == 1 else list(axes)
    for ax, (metric, values) in zip(axes, metrics.items()):
        bars = ax.bar(range(len(names)), values, color=[f"C{i}" for i in range(len(names))])
        for bar, v in zip(bars, values):
            ratio = v / values[0] if values[0] else float("nan")
            ax.text(bar.get_x() + bar.get_width() / 2, v, f"{ratio:.2g}x", ha="center",
                    va="bottom", fontsize=8)
        ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
        ax.set_title(metric, fontsize=9)
        ax.set_ylim(0, max(values + [0]) * 1.2 or 1)
        ax.tick_params(axis="y", labelsize=7)
        ax.yaxis.set_major_formatter(plt.FuncFormatter(_human))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def full_vs_lora_figures(result, keys: Sequence[str] = ("curves", "quality", "ranks", "costs")
                         ) -> dict[str, Figure]:
    """Step 4's comparison (a `course.full_vs_lora.Comparison`): the figures named in `keys` ->
    Figure. "curves": loss per step; "quality": exact match, test loss and the loss on plain
    held-out stories (forgetting) per run, the base model dotted; "ranks": the rank sweep (when
    there is one); "costs": parameters, optimizer state, checkpoint, memory, step time."""
    full = next(r for r in result.runs if r.method == "full")
    figs: dict[str, Figure] = {}
    if "curves" in keys:
        figs["curves"] = loss_curves(
            {r.name: {"train": r.train_loss, "val": r.val_loss} for r in result.runs},
            title=f"Full fine-tuning vs LoRA: loss ({result.device}, same batches)")
    runs = result.runs + [s for s in result.sweep if all(s is not r for r in result.runs)]
    if "quality" in keys:
        names = [r.name for r in runs]
        fig, axes = plt.subplots(1, 3, figsize=(11, 3.3))
        base = getattr(result, "base", {}) or {}
        for ax, key, title, share, ref in (
                (axes[0], "exact_match", "held-out exact match", True,
                 result.base_exact_match),
                (axes[1], "test_loss", "loss per answer token\n(the same test conversations)",
                 False, base.get("test_loss")),
                (axes[2], "story_loss", "loss on plain held-out stories\n(forgetting: higher "
                 "= more forgotten)", False, base.get("story_loss"))):
            values = [getattr(r, key) for r in runs]
            shown = [v if v is not None else 0.0 for v in values]
            ax.bar(range(len(runs)), shown, color=[f"C{i}" for i in range(len(runs))])
            for x, v in enumerate(values):
                if v is not None:
                    ax.text(x, v, f"{v:.1%}" if share else f"{v:.3f}", ha="center",
                            va="bottom", fontsize=7)
            if ref is not None:
                ax.axhline(ref, color="gray", linestyle=":", label="base model")
                ax.legend(fontsize=7, loc="lower right")
            ax.set_xticks(range(len(runs)), names, rotation=25, fontsize=7)
            ax.set_title(title, fontsize=9)
            if share:
                _percent_axis(ax, shown)
            else:
                ax.set_ylim(0, max(shown + [ref or 0]) * 1.2 or 1)
        fig.suptitle(f"Full fine-tuning vs LoRA: quality ({result.config.get('n_test')} "
                     "test conversations)")
        fig.tight_layout()
        figs["quality"] = fig
    if result.sweep and "ranks" in keys:
        sweep = sorted(result.sweep, key=lambda r: r.r)
        figs["ranks"] = rank_sweep(
            [r.r for r in sweep], [r.trainable for r in sweep],
            [r.exact_match or 0.0 for r in sweep], [r.final_val_loss for r in sweep],
            full=(full.trainable, full.exact_match or 0.0, full.final_val_loss))
    if "costs" in keys:
        mib = 2 ** 20
        figs["costs"] = cost_bars([r.name for r in result.runs], {
            "trainable parameters": [r.trainable for r in result.runs],
            "optimizer state (MiB)": [r.optimizer_bytes / mib for r in result.runs],
            "checkpoint (MiB)": [r.checkpoint_bytes / mib for r in result.runs],
            "training memory (MiB)": [r.memory["accounted"]["total"] / mib
                                      for r in result.runs],
            "step time (ms)": [r.step_seconds * 1000 for r in result.runs]},
            title=f"Full fine-tuning vs LoRA: what each costs ({result.device})")
    return figs


# --- step 3: the training loop -------------------------------------------------------------------
def training_curves(train: Sequence[Mapping], evals: Sequence[Mapping] = (),
                    title: str = "Fine-tuning") -> Figure:
    """Three panels over optimizer steps: train and validation loss, learning rate, gradient
    norm (before clipping). `train`: records with step, loss, lr, grad_norm; `evals`: step, loss."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    steps = [r["step"] for r in train]
    axes[0].plot(steps, [r["loss"] for r in train], color="tab:blue", alpha=0.5, lw=1,
                 label="train (per step)")
    if evals:
        axes[0].plot([r["step"] for r in evals], [r["loss"] for r in evals], "o-",
                     color="tab:orange", label="validation")
    axes[0].set_ylabel("loss (mean over answer tokens)")
    axes[0].legend(fontsize=8)
    axes[1].plot(steps, [r["lr"] for r in train], color="tab:green")
    axes[1].set_ylabel("learning rate")
    axes[2].plot(steps, [r["grad_norm"] for r in train], color="tab:red", lw=1)
    axes[2].set_ylabel("gradient norm (before clipping)")
    for ax in axes:
        ax.set_xlabel("optimizer step")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def overfitting_curves(runs: Mapping[str, tuple[Sequence[Mapping], Sequence[Mapping]]],
                       title: str = "Same data, more epochs") -> Figure:
    """Train (dashed) and validation (solid) loss per run: {label: (train records, evals)},
    x = epochs. A widening gap between the two is overfitting."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for i, (label, (train, evals)) in enumerate(runs.items()):
        color = f"C{i}"
        ax.plot([r["epoch"] for r in train], [r["loss"] for r in train], "--", color=color,
                alpha=0.7, label=f"{label}: train")
        ax.plot([r["epoch"] for r in evals], [r["loss"] for r in evals], "o-", color=color,
                label=f"{label}: validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def packing_layout(padded: Mapping, packed: Mapping, title: str = "Padding vs packing") -> Figure:
    """The same conversations as a padded batch and as a packed one (collated dicts), each
    position coloured by the conversation it belongs to (white: padding), and the attention
    mask of the first packed row: one causal triangle per conversation, nothing across."""
    import numpy as np

    from course.packing import real_positions

    def owners(batch: Mapping) -> np.ndarray:  # conversation number of each real position
        real = real_positions(batch).numpy()
        if "position_ids" in batch and "padding_mask" in batch:  # a new conversation at each 0
            starts = (batch["position_ids"].numpy() == 0) & real
            ids = np.cumsum(starts.reshape(-1)).reshape(real.shape) - 1
        else:  # one conversation per row
            ids = np.repeat(np.arange(len(real))[:, None], real.shape[1], axis=1)
        return np.where(real, ids % 20, np.nan)

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6),
                             gridspec_kw={"width_ratios": [1.3, 1.3, 1]})
    for ax, batch, name in ((axes[0], padded, "padded"), (axes[1], packed, "packed")):
        grid = owners(batch)
        waste = np.isnan(grid).mean()
        ax.imshow(grid, aspect="auto", cmap="tab20", interpolation="nearest", vmin=0, vmax=19)
        ax.set_title(f"{name}: {grid.shape[0]} rows x {grid.shape[1]} positions, "
                     f"{waste:.0%} padding", fontsize=9)
        ax.set_xlabel("position")
        ax.set_ylabel("row")
    mask = packed["attention_mask"][0, 0].numpy() == 0  # 0 = may attend (additive mask)
    axes[2].imshow(mask, cmap="Greys", interpolation="nearest")
    axes[2].set_title("packed row 0: who may attend to whom", fontsize=9)
    axes[2].set_xlabel("key position")
    axes[2].set_ylabel("query position")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
