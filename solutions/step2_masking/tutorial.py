"""Source of tutorial.ipynb, in percent format (cell markers: see course/nbgrader/source.py).

Edit this file, not the notebook: `make release` rebuilds solutions/step2_masking/tutorial.ipynb
from it and then the learner version in step2_masking/. Instructor-only: never released.
"""

# %% [markdown] intro
# # Step 2 — Loss masking: train only on what the assistant says
#
# SFT feeds the model whole conversations, but it should only *learn to write* the answers. The
# tool for that is the label: every token gets the id the model must predict there, or `-100`,
# which the loss skips. In this step you build the labels by hand, write the loss that reads
# them, and prove both equal to what 🤗 transformers, TRL and their collators do. Then three
# short fine-tunes show what goes wrong when the labels are wrong.
#
# **You will**
# - reject conversations that would silently train on nothing (no answer, unknown role, content
#   that is not text), with an error naming the record;
# - build labels for ChatML conversations turn by turn: `-100` on system, user and template
#   tokens; the assistant's content **and its `<|im_end|>`** trained; every assistant turn of a
#   multi-turn conversation (or only the last); and the Alpaca variant;
# - write `masked_cross_entropy`: shift once, skip `-100`, average over tokens or over
#   sequences — equal to the model's own loss — and see what a second shift does;
# - truncate without leaving empty samples, and pad a batch like `DataCollatorForSeq2Seq`;
# - see each token coloured by whether it is trained, and compare three fine-tunes: assistant
#   labels, no mask at all, and assistant labels without the end token.
#
# **Time:** 75–105 minutes. The experiment at the end (three short fine-tunes) took 86 s of CPU
# time in the course's run — 228 s of wall time with one thread on a busy 2-core machine; it shows
# a progress bar, and `SMALL = True` in its cell runs half the steps.
# **You edit:** `masking_exercise.py` (six TODOs). This notebook imports the module and reloads
# it before every cell, so save the file and re-run the cell.
#
# **Checks:** each TODO has a check cell. ✓ lines say what passed; ✗ names the classic mistake
# your output looks like. Hidden tests run when your work is graded
# (`make grade STEP=step2_masking`).

# %% setup
from course.notebook import setup

setup()  # %autoreload 2, and a short hint instead of a traceback for an unfinished TODO

import json
import math
import time

import datasets
import torch
from IPython.display import HTML, display

import masking_exercise as ex
from course import REPO_ROOT, plots
from course.checks import step2_masking as checks
from course.data import IGNORE_INDEX, load_split, tokenize_for_sft
from course.models import load_base_model, load_tokenizer
from course.notebook import Table, is_grading

datasets.disable_progress_bars()
torch.manual_seed(0)
if is_grading():
    torch.set_num_threads(1)  # small tensors on a shared grading machine: one thread is fastest
tokenizer = load_tokenizer()
model = load_base_model(device="cpu")  # the tiny base model of step 1: enough to compute losses
train = load_split("train")
conversations = list(train["messages"])
single = checks.ONE_EXCHANGE
multi = checks.MULTI_TURN
print(f"{len(conversations):,} training conversations; {IGNORE_INDEX} = ignored label")

# %% [markdown]
# ## 1. What a label is
#
# A causal language model reads tokens $x_1 \dots x_T$ and at every position $t$ outputs a
# distribution over the next token. Training is *teacher forcing*: the model always sees the
# true prefix, never its own guesses, and the loss is the cross-entropy of the true next token
#
# $$\mathcal{L} = -\frac{1}{N}\sum_{t \in \text{trained}} \log p_\theta(x_t \mid x_{<t}),
# \qquad N = |\text{trained}|.$$
#
# Pretraining trains every position. SFT trains only the answer: the prompt is *context*, the
# model must read it but not learn to write it. In code this is one list, `labels`, as long as
# `input_ids`:
#
# | position | input_ids | labels |
# |---|---|---|
# | prompt, template tokens | the token's id | `-100` (ignored) |
# | the assistant's answer and its `<|im_end|>` | the token's id | the same id |
#
# `-100` is PyTorch's `ignore_index` for `cross_entropy`, and every 🤗 model skips it. Why mask
# the prompt? Without a mask (labels = input_ids, as in many first SFT scripts) the model
# spends most of its updates learning to write questions and stories — here about nine tokens
# in ten are prompt — and the training loss mostly measures the prompt, not the answers.
#
# Labels **line up with input_ids**: label $t$ is token $t$ itself. The shift to "next token"
# happens once, inside the loss (section 5).

# %% [markdown]
# ## 2. Bad input is an error, never an empty sample
#
# A conversation without an assistant turn gets labels that are all `-100`: it costs compute and
# teaches nothing, and a batch of only such samples has no loss to average (0 / 0 = NaN). An
# unknown role (`"bot"`, `"gpt"`) or a `None` content is a broken record. Find these **before**
# tokenizing, and say which record it is — with 12,000 records, "invalid input" is useless.
#
# **TODO 1** — implement `check_conversation(messages, record_id=None)`.

# %%
try:
    ex.check_conversation([{"role": "user", "content": "Hi"}], record_id="train-00042")
except ValueError as err:
    print("ValueError:", err)

# %% test check_conversation points=1
checks.check_check_conversation(ex)

# %% test check_conversation_hidden points=1
# Hidden tests for check_conversation run here when your work is graded.
### BEGIN HIDDEN TESTS
from course.grading import load_reference

load_reference("step2_masking", "hidden_checks").check_conversation_hidden(
    ex, load_reference("step2_masking", "masking_exercise"), tokenizer)
### END HIDDEN TESTS

# %% [markdown]
# ## 3. Labels by hand, turn by turn
#
# A ChatML turn is four pieces. Which of them does the model have to *write*?
#
# | piece | user / system turn | assistant turn |
# |---|---|---|
# | `<|im_start|>{role}\n` | -100 | -100 — the template writes it (the generation prompt) |
# | content | -100 | **trained** |
# | `<|im_end|>` | -100 | **trained** — the model must learn to stop |
# | `\n` | -100 | -100 — the template writes it |
#
# The end token is the subtle one. At inference, generation stops when the model emits
# `<|im_end|>`. If it was never a label, the model never learns to emit it and rambles on to
# the token limit — while the training loss looks perfectly healthy.
#
# **Multi-turn:** every assistant turn is trained; earlier answers are also context for later
# ones. Some recipes train only the last turn (`last_turn_only=True`): earlier answers may come
# from another model, or you want one target per sample.
#
# Build the ids piece by piece (`piece_ids` tokenizes and caches the short pieces), so you know
# where every piece starts and ends — no searching in the token list afterwards.
#
# **TODO 2** — implement `labels_for_conversation(messages, tokenizer, last_turn_only=False)`.
# The visualiser colours every token: green is trained, grey is `-100`.

# %%
for messages in (single, multi):
    enc = ex.labels_for_conversation(messages, tokenizer)
    display(HTML(ex.visualize_labels(enc["input_ids"], enc["labels"], tokenizer)))
enc = ex.labels_for_conversation(multi, tokenizer, last_turn_only=True)
print("last_turn_only=True:")
display(HTML(ex.visualize_labels(enc["input_ids"], enc["labels"], tokenizer)))

# %% test labels_for_conversation points=2
checks.check_labels_for_conversation(ex, tokenizer)
checks.check_labels_all(ex, tokenizer, train)

# %% test labels_for_conversation_hidden points=3
# Hidden tests for labels_for_conversation run here when your work is graded.
### BEGIN HIDDEN TESTS
from course.grading import load_reference

load_reference("step2_masking", "hidden_checks").labels_for_conversation_hidden(
    ex, load_reference("step2_masking", "masking_exercise"), tokenizer)
### END HIDDEN TESTS

# %% [markdown]
# The check above ran your function on the whole training set through `labels_for_batch` and
# `datasets.map(batched=True)`, and compared it with the library way (computed once, then
# cached in `build/cache/`). The benchmark `python -m benchmarks.bench_masking` times both
# sides on the full split; its last result:

# %%
bench = json.loads((REPO_ROOT / "benchmarks" / "results" / "masking_step2.json").read_text())
print(f"by hand (labels_for_batch):           {bench['hand_written_s']:.2f} s for "
      f"{bench['conversations']:,} conversations\n"
      f"library (apply_chat_template + mask): {bench['library_s']:.2f} s\n"
      f"the library takes {bench['ratio_library_over_hand_written']:.2f}x as long")

# %% [markdown]
# ### The library way, and when it silently fails
#
# transformers computes the same mask from the chat template:
# `apply_chat_template(messages, return_assistant_tokens_mask=True)` returns `assistant_masks`,
# 1 on tokens rendered inside `{% generation %} ... {% endgeneration %}`. TRL's `SFTTrainer`
# uses it with `assistant_only_loss=True` (and `completion_only_loss` for prompt/completion
# data). Our template wraps the answer **and** `<|im_end|>` in the markers:

# %%
print(tokenizer.chat_template)
lib = ex.library_labels(single, tokenizer)
print("equal to the library:", lib == tokenize_for_sft(single, tokenizer))

# %% [markdown]
# Many tokenizers ship a template **without** generation markers. transformers then returns an
# all-zero mask — every label `-100`, no error, a run that trains on nothing. The fallback
# works through characters: render the text, find each answer's character span (the
# conversation rendered up to that turn with the generation prompt is a prefix of the full
# text), tokenize with `return_offsets_mapping=True`, and train every token that overlaps an
# answer span. Your hand-written labels never needed the template at all:

# %%
import copy
import re

plain = copy.deepcopy(tokenizer)
plain.chat_template = re.sub(r"\{%-?\s*(end)?generation\s*-?%\}", "", tokenizer.chat_template)
raw = plain.apply_chat_template(multi, tokenize=True, return_dict=True,
                                return_assistant_tokens_mask=True)
print("template without markers, library mask sum:", sum(raw["assistant_masks"]))
fallback = ex.library_labels(multi, plain)
print("offsets fallback equal to the marked template:",
      fallback == tokenize_for_sft(multi, tokenizer))

# %% [markdown]
# ### Real templates, and when "equal to TRL" holds
#
# None of the real templates tried here has generation markers: Qwen2.5, Llama 3.2, Mistral
# Nemo, Gemma 2. On each of them transformers' mask is all zeros, so
# `course.data.tokenize_for_sft` finds the answers by the prefix rule above and trains each
# answer and the special token the template writes right after it — the token that ends the
# turn, whatever its name (`<|im_end|>`, `<|eot_id|>`, `</s>`, `<end_of_turn>`). On 332 real
# conversations it trains something on every one, with every template, and on Qwen2.5 your
# hand-written labels equal it on all 332 once the template's default system prompt is an
# explicit first turn (step 1). A template that renders earlier turns differently when more
# turns follow has no such prefix, and then the labels are an error that names the record,
# never a silent guess: Mistral Nemo drops a system prompt from any conversation that ends with
# an answer, so a conversation with one cannot be labelled that way.
#
# TRL's `SFTTrainer(assistant_only_loss=True)` needs markers. For a few known templates it swaps
# in a training copy of its own; for the others it refuses. Compared token by token on the same
# conversations:
#
# | template | TRL's assistant-only labels vs ours |
# |---|---|
# | the course's (has markers) | equal |
# | Qwen2.5 | TRL also trains the `\n` after `<\|im_start\|>assistant` and the `\n` after `<\|im_end\|>`: 2 more tokens per answer |
# | Gemma 2 | TRL also trains the `\n` after `<end_of_turn>`: 1 more token per answer |
# | Llama 3.2, Mistral Nemo | TRL refuses assistant-only loss (no training template for them) |
#
# So "equal to TRL" holds for a template with markers that wrap exactly the answer and its end
# token, as the course's do. The extra tokens TRL trains are never written by the model: the
# `\n` after `assistant` belongs to the generation prompt, which is given at inference, and the
# text after the end token is never generated, because generation stops at it.

# %% [markdown]
# ## 4. Alpaca: the prompt is context, the response is trained
#
# Without a chat template the same idea holds: the Alpaca prompt (instruction, input,
# `### Response:\n`) is labelled `-100`; the response and an EOS token are trained. With no
# special end-of-turn token in the text, the EOS id is the only way the model can learn where
# a response ends.
#
# **TODO 3** — implement `labels_for_alpaca(record, tokenizer)`.

# %%
enc = ex.labels_for_alpaca(checks.ALPACA, tokenizer)
display(HTML(ex.visualize_labels(enc["input_ids"], enc["labels"], tokenizer)))

# %% test labels_for_alpaca points=1
checks.check_labels_for_alpaca(ex, tokenizer)

# %% test labels_for_alpaca_hidden points=1
# Hidden tests for labels_for_alpaca run here when your work is graded.
### BEGIN HIDDEN TESTS
from course.grading import load_reference

load_reference("step2_masking", "hidden_checks").labels_for_alpaca_hidden(
    ex, load_reference("step2_masking", "masking_exercise"), tokenizer)
### END HIDDEN TESTS

# %% [markdown]
# ## 5. The loss: shift once, skip -100, choose the average
#
# `logits[:, t]` is the model's guess for the token at $t + 1$, so the loss pairs
# `logits[:, :-1]` with `labels[:, 1:]`: the last logit has nothing to predict and the first
# label is never predicted. Every 🤗 causal LM does exactly this inside
# `model(input_ids, labels=labels)`. Shift **once**: if you shift the labels by hand and then
# give them to the model, it shifts them again and learns to predict the token *after* the
# next one — the loss still goes down, the generations are garbled.
#
# Two ways to average the trained tokens' losses:
# - **token** (what transformers does): the sum over all trained tokens of the batch divided by
#   their number. Every token weighs the same.
# - **sequence**: each sequence's own mean, then the mean over sequences. A one-token answer
#   then weighs as much as a fifty-token one.
#
# If no token in the batch is trained the count is 0: divide by `max(count, 1)` and return a
# 0 that is still connected to the logits (zero gradient), never NaN.
#
# **TODO 4** — implement `masked_cross_entropy(logits, labels, normalization="token")`.

# %%
batch = checks.library_batch(tokenizer, conversations[:4])
with torch.no_grad():
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    library_loss = model(**batch).loss
print(f"yours: {ex.masked_cross_entropy(logits, batch['labels']).item():.6f}   "
      f"model(input_ids, labels=labels).loss: {library_loss.item():.6f}")
targets = batch["labels"][:, 1:]
per_token = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2),
                                              targets.clamp(min=0), reduction="none")
trained = targets != IGNORE_INDEX
is_end = trained & (targets == tokenizer.convert_tokens_to_ids("<|im_end|>"))
print(f"of {int(trained.sum())} trained tokens, {int(is_end.sum())} are <|im_end|>: "
      f"{per_token[is_end].mean():.1f} nats each; the other {int((trained & ~is_end).sum())}: "
      f"{per_token[trained & ~is_end].mean():.2f} on average; "
      f"a uniform guess over {len(tokenizer):,} tokens: ln {len(tokenizer)} = "
      f"{math.log(len(tokenizer)):.2f}")

# %% [markdown]
# The base model's loss here is about as high as a uniform guess over the vocabulary, and that is
# not a broken model: the second line splits it. The base model was pretrained on plain text and
# never saw `<|im_end|>`, so it gives that token almost no probability, and each one costs far
# more than a uniform guess would (several times ln 4096). The answer tokens cost less, but still
# a lot: they follow template tokens the base model has never seen either. Fine-tuning removes
# both costs first — which is why an SFT loss falls so fast in its first steps.

# %% test masked_cross_entropy points=2
checks.check_masked_cross_entropy(ex, model, tokenizer, conversations[:4])

# %% test masked_cross_entropy_hidden points=2
# Hidden tests for masked_cross_entropy run here when your work is graded.
### BEGIN HIDDEN TESTS
from course.grading import load_reference

load_reference("step2_masking", "hidden_checks").masked_cross_entropy_hidden(
    ex, load_reference("step2_masking", "masking_exercise"), tokenizer)
### END HIDDEN TESTS

# %% [markdown]
# ### Worked example: which normalisation?
#
# Two sequences. Sequence 0 has a one-token answer the model gets badly wrong (loss 3.0);
# sequence 1 a four-token answer it gets nearly right (0.5 per token).
#
# | | token | sequence |
# |---|---|---|
# | formula | (3.0 + 4 × 0.5) / 5 | (3.0 / 1 + 2.0 / 4) / 2 |
# | loss | **1.0** | **1.75** |
# | weight of the short answer's token | 1/5 | 1/2 |
# | weight of each long-answer token | 1/5 | 1/8 |
#
# With "sequence", short answers dominate the gradient. The same effect appears unasked in
# step 3: averaging the losses of several micro-batches (gradient accumulation) is a mean of
# per-batch means unless you count tokens across them.

# %%
toy_logits, toy_labels = ex.normalization_example()
for norm in ex.NORMALIZATIONS:
    print(f"{norm:9s} {ex.masked_cross_entropy(toy_logits, toy_labels, norm).item():.4f}")

# %% [markdown]
# ### What a double shift asks the model
#
# Position by position: the token the model has just read, and the token the loss asks it to
# predict there. With the labels as built it is asked for the next token; with labels shifted by
# hand (and shifted again by the model), for the one after — and the first answer token is never
# asked for at all:

# %%
enc = tokenize_for_sft(single, tokenizer)
ids, built = enc["input_ids"], enc["labels"]
shifted = ex.pre_shifted(torch.tensor([built]))[0].tolist()


def asked(label: int) -> str:
    return "-" if label == IGNORE_INDEX else repr(tokenizer.decode([label]))


Table([[repr(tokenizer.decode([ids[t - 1]])), asked(built[t]), asked(shifted[t])]
       for t in range(1, len(ids)) if (built[t], shifted[t]) != (IGNORE_INDEX, IGNORE_INDEX)],
      ["model has read", "labels as built: predict", "shifted by hand: predict"], width=24)

# %% [markdown]
# ## 6. Truncation that never hides an empty sample
#
# Samples longer than `max_length` are cut (`cutoff_len` in LLaMA-Factory, `max_length` in
# TRL). Cutting keeps the start, and the answer comes last: if the prompt alone fills
# `max_length`, nothing trainable is left. Drop such samples and **count** them
# (`answer_truncated`), separately from the ones that never had an answer (`no_answer`) — a
# rising count tells you `max_length` is too small for your data.
#
# **TODO 5** — implement `truncate_and_filter(examples, max_length)`.

# %%
encoded = [tokenize_for_sft(m, tokenizer) for m in conversations[:200]]
for limit in (64, 96, 128):
    kept, dropped = ex.truncate_and_filter(encoded, limit)
    print(f"max_length {limit:3d}: kept {len(kept):3d}, dropped {len(dropped):3d}",
          sorted({reason for _, reason in dropped}))

# %% test truncate_and_filter points=1
checks.check_truncate_and_filter(ex, tokenizer)

# %% test truncate_and_filter_hidden points=2
# Hidden tests for truncate_and_filter run here when your work is graded.
### BEGIN HIDDEN TESTS
from course.grading import load_reference

load_reference("step2_masking", "hidden_checks").truncate_and_filter_hidden(
    ex, load_reference("step2_masking", "masking_exercise"), tokenizer)
### END HIDDEN TESTS

# %% [markdown]
# ## 7. The collator: one rectangle per batch
#
# A batch is a (B, L) tensor, so shorter examples are padded to the longest one, on the right
# for training. Three lists, three padding values:
#
# | | padded with | why |
# |---|---|---|
# | input_ids | the pad id | any id; attention ignores it |
# | attention_mask | 0 | real tokens never attend to padding |
# | labels | -100 | padding is never trained |
#
# A trap: many tokenizers have no pad token, and the usual fix is `pad_token = eos_token`. A
# collator that then finds padding by `input_ids == pad_id` masks every real EOS too — and the
# model never learns to stop. Pad the labels list itself; never derive labels from input_ids.
#
# **TODO 6** — implement `collate(features, pad_token_id, pad_to_multiple_of=None)`.

# %%
features = [tokenize_for_sft(m, tokenizer) for m in conversations[:6]]
padded = ex.collate(features, tokenizer.pad_token_id, pad_to_multiple_of=8)
print({k: tuple(v.shape) for k, v in padded.items()})
print("last 6 positions of the shortest example:")
shortest = min(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
for key, value in padded.items():
    print(f"  {key:15s}", value[shortest, -6:].tolist())

# %% test collate points=1
checks.check_collate(ex, tokenizer, features)

# %% test collate_hidden points=2
# Hidden tests for collate run here when your work is graded.
### BEGIN HIDDEN TESTS
from course.grading import load_reference

load_reference("step2_masking", "hidden_checks").collate_hidden(
    ex, load_reference("step2_masking", "masking_exercise"), tokenizer)
### END HIDDEN TESTS

# %% [markdown]
# ## 8. The experiment: what the labels teach
#
# Three short fine-tunes of the base model, identical except for their labels:
#
# | variant | labels |
# |---|---|
# | `assistant_only` | the assistant's tokens and `<|im_end|>` — this step's mask |
# | `no_mask` | labels = input_ids: prompt and template trained too |
# | `no_end_token` | the assistant's tokens, `<|im_end|>` not trained |
#
# Same starting weights, same batches, same steps (a plain PyTorch loop; the code is in
# `course/masking_ablation.py`, and `make bench-masking` reruns it from the command line).
# Measured on held-out test conversations:
#
# - exact match of the greedy answer, and the **stop rate** — how often the model emits
#   `<|im_end|>` within the generation budget;
# - the loss per **answer** token and per **prompt** token (system, user, template): what each
#   variant learned to write;
# - what the model writes when it is **made to go on** past a finished answer (12 more tokens,
#   stop tokens ignored): does it start a user turn of its own?
#
# And during training, every step's loss split into its answer tokens and its prompt tokens,
# from the same forward pass, for every variant — what each training loss is made of.
# (While your work is graded, a much smaller run just checks the cell works.)

# %%
from course import masking_ablation as ablation

SMALL = False  # True on a slow or busy machine: half the steps, half the test conversations
last = json.loads((REPO_ROOT / "benchmarks" / "results" / "masking_ablation.json").read_text())
print(f"the course's run of this cell: {last['total_cpu_seconds']:.0f} s of CPU time "
      f"({last['total_seconds']:.0f} s wall, {last['torch_threads']} thread, load "
      f"{last['load_1min']})")
budget = (ablation.GRADING if is_grading() else ablation.QUICK if SMALL else ablation.FULL)
trained = {}
results = ablation.run(budget, models=trained, progress=not is_grading(), tokenizer=tokenizer,
                       base_model=model, train=train)
fig = plots.masking_ablation(results)
Table([[name, f"{r['exact_match']:.0%}", f"{r['stop_rate']:.0%}", f"{r['answer_loss']:.3f}",
        f"{r['prompt_loss']:.3f}", f"{r['continuation']['writes_user_turn']:.0%}",
        r["continuation"]["examples"][0][:40]] for name, r in results["results"].items()],
      ["variant", "exact match", "stop rate", "answer loss", "prompt loss", "writes a user turn",
       "made to go on: first test"], width=14)

# %% [markdown]
# How to read it (your numbers depend on the budget; the course's runs are committed in
# `benchmarks/results/masking_ablation.json` and `masking_ablation_noisy.json`, with their plots):
#
# - **Stop rate.** `no_end_token` never saw `<|im_end|>` as a target, so it does not stop: it
#   runs to the token limit and cannot score an exact match, however good the start of its
#   answer is. Its answer loss counts the end token too, and that is where it pays.
# - **What `no_mask` learned to write.** Its prompt loss falls with its answer loss (the course's
#   run: 0.88 on held-out prompts, against 7.95 for `assistant_only`, whose prompt loss *rises*
#   from the base model's 4.87: nothing asks it to predict prompts). Made to go on past a
#   finished answer, `no_mask` opens a user turn and writes the user's next question in 86 % of
#   the test conversations, `assistant_only` in 0 %: train on the user's turns and the model
#   learns to play the user too.
# - **Its training loss measures the prompt.** In the bottom panels, `no_mask`'s loss on the
#   prompt tokens of its training batches tracks its own training loss (the last 8 steps: 0.89
#   on prompt tokens, 0.87 in all), because about nine tokens in ten are prompt; its answer
#   tokens are a different curve. A falling `no_mask` loss says little about the answers.
# - **Where masking does not help: answer quality, on this data.** `no_mask` ended with a
#   slightly *lower* answer loss than `assistant_only` (0.83 vs 0.89 held out) and stopped almost
#   as often (97 % vs 100 %); exact match is near zero for every variant after 48 steps (the
#   answers' format is learned, names are not yet copied well: an answer such as "The story is
#   about" followed by a garbled held-out name is typical of this stage). The prompts here are
#   stories like the pretraining text, so predicting them is extra reading practice — the regime
#   in which Shi et al. (2024, *Instruction Tuning With Loss Over Instructions*) also found that
#   a loss over the instructions can help.
# - **A regime where the prompt is text not to imitate** (`make bench-masking` with
#   `--prompt-noise 40`: every user turn ends with 40 random words, a pasted log): `no_mask`
#   learns to write the noise (held-out prompt loss 4.01, the base model 8.48) and opens a user
#   turn after 98 % of the answers; its training loss (2.52 over the last 8 steps) is more than
#   twice its answer-token loss (1.13), and on its training batches its answers are learned more
#   slowly than `assistant_only`'s (1.13 vs 0.96). Held out, the two answer losses end equal
#   (1.27 vs 1.26): at this budget the mask's gain is in what the model writes, not in the loss
#   of its answers. The committed run's figures:

# %%
noisy = json.loads((REPO_ROOT / "benchmarks" / "results" /
                    "masking_ablation_noisy.json").read_text())
fig = plots.masking_ablation(noisy, title="What the labels teach: user turns end with 40 "
                                          "random words (committed run)")

# %% [markdown]
# The double shift of section 5, on the model fine-tuned with the right labels: the same
# conversations, labelled right and shifted by hand.

# %%
tuned = trained.get("assistant_only", model)
demo = checks.library_batch(tokenizer, conversations[:16])
losses = ex.double_shift_demo(tuned, demo["input_ids"], demo["labels"])
for name, value in losses.items():
    print(f"{name:24s} loss {value:.3f}")

# %% [markdown] checklist
# ## Checklist
#
# - [ ] I can say which tokens of a ChatML conversation are trained, and why `<|im_end|>` is
#   one of them.
# - [ ] My labels equal `apply_chat_template(..., return_assistant_tokens_mask=True)` on every
#   training conversation, and I know the fallback when a template has no generation markers.
# - [ ] I can say when labels "equal to TRL's assistant-only loss" hold, and which tokens TRL
#   trains besides ours with Qwen2.5's and Gemma 2's templates.
# - [ ] My loss equals `model(input_ids, labels=labels).loss`; I can explain where the shift
#   happens and what a second shift does.
# - [ ] I can explain token vs sequence normalisation with the worked example.
# - [ ] A fully masked batch gives 0, not NaN; truncation drops and counts empty samples.
# - [ ] My collator equals `DataCollatorForSeq2Seq`, also when the pad id is the EOS id.
# - [ ] I can read the experiment: what no mask and a missing end token do to a fine-tune.
#
# **Grade yourself:** `make grade STEP=step2_masking` prints the points of every test and
# writes a feedback page. **Compare** with the answer key:
# [solutions/step2_masking/masking_exercise.py](../solutions/step2_masking/masking_exercise.py)
# and [solutions/step2_masking/tutorial.ipynb](../solutions/step2_masking/tutorial.ipynb).
#
# **Next:** [Step 3 — the SFT training loop](../step3_sft/tutorial.ipynb): these labels, this
# loss and this collator in a training loop of your own, with gradient accumulation that counts
# tokens across micro-batches.
