"""Source of tutorial.ipynb, in percent format (cell markers: see course/nbgrader/source.py).

Edit this file, not the notebook: `make release` rebuilds solutions/step1_data/tutorial.ipynb
from it and then the learner version in step1_data/. Instructor-only: never released.
"""

# %% [markdown] intro
# # Step 1 — Data and chat formats
#
# A pretrained model continues text. Supervised fine-tuning (SFT) trains it on examples of the
# behaviour we want — a request, then the answer — until it answers instead of continuing. Those
# examples are data, and data arrives in several shapes. In this step you turn three raw shapes
# into one, write the chat template by hand, and clean the data before anything is trained on it.
#
# **You will**
# - load the Alpaca, ShareGPT and `messages` files with 🤗 `datasets` and normalise every record
#   to one `messages` schema;
# - fill in the Alpaca prompt template, and build ChatML text and token ids by hand — equal to
#   `tokenizer.apply_chat_template` on every record;
# - find and drop broken samples (non-string or empty content, wrong role order, duplicates,
#   over-long samples), count why each was dropped, and choose a length limit from a histogram;
# - see why the format matters: one base model, one question, three prompt formats.
#
# **Time:** 60–90 minutes. **You edit:** `data_exercise.py` (five TODOs) and one cell below.
# This notebook imports the module and reloads it before every cell, so save the file and
# re-run the cell.
#
# **Checks:** each TODO has a check cell. ✓ lines say what passed; ✗ names the classic mistake
# your output looks like. Hidden tests run when your work is graded
# (`make grade STEP=step1_data`).

# %% setup
from course.notebook import setup

setup()  # %autoreload 2, and a short hint instead of a traceback for an unfinished TODO

import json
from collections import Counter

import datasets

import data_exercise as ex
from course import plots
from course.checks import step1_data as checks
from course.data import iter_jsonl, load_split, raw_path
from course.models import load_tokenizer
from course.notebook import Table, is_grading, require

datasets.disable_progress_bars()
tokenizer = load_tokenizer()
print(f"tokenizer: {len(tokenizer):,} tokens, end of turn {tokenizer.eos_token!r}")

# %% [markdown]
# ## 1. Three shapes of the same data
#
# An SFT example pairs *what the model is given* with *what it should answer*. Three shapes are
# common:
#
# | shape | one record | seen in |
# |---|---|---|
# | Alpaca | `{"instruction", "input", "output"}` | Stanford Alpaca |
# | ShareGPT | `{"conversations": [{"from", "value"}]}`, from = system / human / gpt | chat logs |
# | messages | `{"messages": [{"role", "content"}]}`, role = system / user / assistant | OpenAI |
#
# Where the data comes from matters more than how much of it there is. Alpaca's 52k examples
# were generated cheaply by a bigger model (text-davinci-003, with the Self-Instruct method);
# Dolly's 15k were written by people (its fields, `instruction`, `context`, `response` and
# `category`, map onto Alpaca's shape); Open-Orca holds about 1M answers written by GPT-4 and
# 3.2M by GPT-3.5, for FLAN questions with a system prompt asking for explanations. A few
# thousand **diverse and correct** examples beat many repetitive or noisy ones — which is why
# section 5 cleans the data.
#
# The course's data are questions about short stories. The training set is spread over the
# three shapes. 🤗 `datasets` loads each JSON-lines file into a table:

# %%
raw = {shape: datasets.load_dataset("json", data_files=str(raw_path("train", shape)),
                                    split="train")
       for shape in ("alpaca", "sharegpt", "messages")}
for shape, ds in raw.items():
    print(f"{shape:9s} {ds.num_rows:5,} records  columns: {ds.column_names}")
records = {shape: ds.to_list() for shape, ds in raw.items()}  # plain dicts, for the checks

# %%
for shape in raw:
    print(f"--- {shape}\n{json.dumps(records[shape][1], indent=1, ensure_ascii=False)[:700]}\n")

# %% [markdown]
# ## 2. The Alpaca prompt template
#
# Alpaca turns a record into one string with plain-text markers. There are two variants: with an
# input (here, the story) and without one:
#
# ```
# Below is an instruction that describes a task, paired with an input that provides further
# context. Write a response that appropriately completes the request.
#
# ### Instruction:
# {instruction}
#
# ### Input:
# {input}
#
# ### Response:
# ```
#
# The model is trained to continue after `### Response:\n` with the output, followed by the
# tokenizer's end-of-sequence token (EOS, which Alpaca's training code appends to every output):
# that is how it learns to stop. The markers are ordinary text: nothing stops a story from
# containing `### Response:`, and there is no marker for who speaks in a conversation of several
# turns. Chat templates (section 4) fix both.
#
# **TODO 1** — implement `alpaca_prompt(record)` in `data_exercise.py`.

# %%
print(ex.alpaca_prompt(records["alpaca"][0]))

# %% test alpaca_prompt points=1
checks.check_alpaca_prompt(ex)

# %% test alpaca_prompt_hidden points=1
# Hidden tests for alpaca_prompt run here when your work is graded.
### BEGIN HIDDEN TESTS
from course.grading import load_reference

load_reference("step1_data", "hidden_checks").alpaca_prompt_hidden(
    ex, load_reference("step1_data", "data_exercise"), records)
### END HIDDEN TESTS

# %% [markdown]
# ## 3. One schema: `messages`
#
# Everything downstream — the chat template, the loss mask of step 2, the training loop — takes
# one shape: a list of `{"role", "content"}` turns. Normalising rules:
#
# - **Alpaca:** the user turn is the instruction, then a blank line, then the input (if any). The
#   input is the story; lose it and the question cannot be answered.
# - **ShareGPT:** `from` becomes `role` (system → system, human → user, gpt → assistant),
#   `value` becomes `content`.
# - **System prompt:** a record's own system turn is kept. An optional `system_prompt` argument
#   adds one where a record has none — dropping it changes what the model is told.
#
# **TODO 2** — implement `normalize_record(record, system_prompt=None)`.

# %%
print(ex.normalize_record(records["alpaca"][0]))
print(ex.normalize_record(records["sharegpt"][1], system_prompt="Answer in one short sentence."))

# %% test normalize_record points=1
checks.check_normalize_record(ex, records)

# %% test normalize_record_hidden points=2
# Hidden tests for normalize_record run here when your work is graded.
### BEGIN HIDDEN TESTS
from course.grading import load_reference

load_reference("step1_data", "hidden_checks").normalize_record_hidden(
    ex, load_reference("step1_data", "data_exercise"), records)
### END HIDDEN TESTS

# %% [markdown]
# The course package has the library way of doing this (`course.data.load_split`, built on
# `course.data.to_messages`). The rest of this notebook and the later steps use it, so they work
# even before your TODO 2 is done:

# %%
library = load_split("train")
conversations = list(library["messages"])
print(f"{len(conversations):,} conversations;",
      dict(sorted(Counter(len(c) for c in conversations).items())), "turns each")

# %% [markdown]
# The 🤗 `datasets` way to apply your function to every record is `map`: one column layout per
# shape goes in, one `messages` column comes out, so the three files can be concatenated. The
# result should be the very same conversations:

# %%
normalized = datasets.concatenate_datasets([
    ds.map(lambda r: {"messages": ex.normalize_record(r)},
           remove_columns=[c for c in ds.column_names if c not in ("id", "task")])
    for ds in raw.values()
]).sort("id")
print(normalized)
print("identical to load_split('train'):", list(normalized["messages"]) == conversations)

# %% [markdown]
# ## 4. Chat templates: ChatML by hand
#
# A chat model also reads one string, but turns are marked with **special tokens** — each is a
# single id of its own, which the tokenizer gives to the marker's exact text:
#
# ```
# <|im_start|>system
# Answer briefly.<|im_end|>
# <|im_start|>user
# Who?<|im_end|>
# <|im_start|>assistant
# Tom.<|im_end|>
# ```
#
# - `<|im_start|>` + role + newline opens a turn; `<|im_end|>` + newline closes it.
# - After an assistant turn, `<|im_end|>` is what the model must learn to produce to **stop**.
#   Without it in the training text, a fine-tuned model rambles on until the token limit.
# - `add_generation_prompt=True` appends `<|im_start|>assistant\n`: at inference time, the
#   model's answer starts right there.
#
# Libraries store this recipe as a Jinja template next to the tokenizer:

# %%
print(tokenizer.chat_template)
for token in ("<|im_start|>", "<|im_end|>"):
    print(f"{token} -> id {tokenizer.convert_tokens_to_ids(token)}")
print(tokenizer.tokenize("<|im_start|>user\nWho?<|im_end|>\n"))

# %% [markdown]
# The tokenizer matches that text wherever it appears, **content included**: a user who types
# `<|im_end|>` closes the turn, and the model sees a boundary the conversation never had (prompt
# injection when serving; wrong turns, and labels built from them, when training).
# `split_special_tokens=True` reads the marker as plain text, but only for a whole text — the
# template's own markers need the ids — so the course's pipeline rejects such content instead,
# naming the record and turn (`course.special_tokens`, called by `course.data.tokenize_for_sft`
# and `make validate-data`):

# %%
from course.data import tokenize_for_sft

typed = "Tell me <|im_end|> now"
print(tokenizer(typed, add_special_tokens=False)["input_ids"],
      f"<- {tokenizer.convert_tokens_to_ids('<|im_end|>')} is <|im_end|>")
print(tokenizer(typed, add_special_tokens=False, split_special_tokens=True)["input_ids"])
try:
    tokenize_for_sft([{"role": "user", "content": typed},
                      {"role": "assistant", "content": "No."}], tokenizer, record_id="demo")
except ValueError as err:
    print("rejected:", err)

# %% [markdown]
# **TODO 3** — implement `format_conversation(messages, tokenizer, add_generation_prompt=False)`:
# the text by hand, then its token ids: tokenize the text with `add_special_tokens=False`, so
# the tokenizer adds no token of its own (a BOS, say) beyond those your text already holds.

# %%
example = conversations[0]
encoded = ex.format_conversation(example, tokenizer)
print(encoded["text"])
print(encoded["input_ids"][:24], "...")

# %% [markdown]
# The check compares your function with `apply_chat_template` on small cases (each classic
# mistake has its own message), then on every training conversation. The library's texts and
# ids for all of them, computed once:

# %%
library_texts, library_ids = checks.library_encode(tokenizer, conversations)
lengths = [len(ids) for ids in library_ids]
print(f"{len(library_texts):,} conversations, {sum(lengths):,} tokens")

# %% test format_conversation points=2
checks.check_format_conversation(ex, tokenizer)
checks.check_format_all(ex, tokenizer, conversations, library_texts, library_ids)

# %% test format_conversation_hidden points=2
# Hidden tests for format_conversation run here when your work is graded.
### BEGIN HIDDEN TESTS
from course.grading import load_reference

load_reference("step1_data", "hidden_checks").format_conversation_hidden(
    ex, load_reference("step1_data", "data_exercise"), tokenizer, conversations)
### END HIDDEN TESTS

# %% [markdown]
# ### A detail that costs accuracy: the first token of an answer
#
# Byte-level BPE glues a leading space to the word that follows it, so `" park"` and `"park"`
# are different tokens. In stories a word nearly always follows a space; in ChatML an answer
# starts right after `assistant\n`, with no space. The model has to produce a first token it has
# rarely seen in pretraining:

# %%
rows = [[w, tokenizer.tokenize(" " + w), tokenizer.tokenize(w)] for w in ("park", "happy", "Mira")]
Table(rows, ["word", "after a space (in a story)", "at the start of an answer"], width=28)

# %% [markdown]
# ## 5. Validate and clean
#
# `dirty.jsonl` mixes good conversations with the defects that quietly hurt SFT:
#
# | defect | why it hurts |
# |---|---|
# | non-string content (`None`, `42`, a list) | cannot be tokenized; crashes the run hours in |
# | empty or whitespace-only content | an empty answer teaches the model to stop at once |
# | wrong role order | an answer before its question, or a last turn with nothing to learn |
# | duplicates | the sample counts twice: over-weighted, memorised |
# | over-long | does not fit the context; cutting it often cuts the answer (all that is trained) |
#
# Each record's `defect` field is the answer key for the checks; your code must not read it.
# Note what 🤗 `datasets` makes of the mixed content types — Arrow needs one type per column:

# %%
print(datasets.load_dataset("json", data_files=str(raw_path("dirty")), split="train").features)
dirty = list(iter_jsonl(raw_path("dirty")))
print(len(dirty), "records;", dict(Counter(r["defect"] or "good" for r in dirty)))

# %% [markdown]
# **TODO 4** — implement `validate_conversation(messages)`: the list of problem codes.

# %%
for r in dirty[:6]:
    print(f"{r['id']:12s} {ex.validate_conversation(r['messages'])}")

# %% test validate_conversation points=1
checks.check_validate_conversation(ex, dirty)

# %% test validate_conversation_hidden points=2
# Hidden tests for validate_conversation run here when your work is graded.
### BEGIN HIDDEN TESTS
from course.grading import load_reference

load_reference("step1_data", "hidden_checks").validate_conversation_hidden(
    ex, load_reference("step1_data", "data_exercise"), dirty)
### END HIDDEN TESTS

# %% [markdown]
# ### How long are the samples?
#
# Length is counted in tokens of the formatted text, special tokens included — that is what
# has to fit into the model's context. The training set, with the over-long dirty samples in red:

# %%
too_long = [len(checks.library_ids(tokenizer, r["messages"]))
            for r in dirty if r["defect"] == "too_long"]
context = tokenizer.model_max_length
fig = plots.length_histogram(lengths, too_long=too_long, context=context)
print(f"training set: median {sorted(lengths)[len(lengths) // 2]}, longest {max(lengths)} tokens;"
      f" over-long samples: {min(too_long)}-{max(too_long)} tokens; context {context}")

# %% [markdown]
# **Your call** — set `MAX_TOKENS`, the longest conversation (in tokens) that training keeps.
# Keep every good training conversation, drop the over-long samples, stay within the context.
# A round number with some headroom is usual.

# %% solution choose_max_tokens
MAX_TOKENS = None
# TODO: set MAX_TOKENS (an int) from the histogram above.
### BEGIN SOLUTION
MAX_TOKENS = min(context, 64 * (max(lengths) // 64 + 1))  # next multiple of 64 above the longest
### END SOLUTION

# %% test max_tokens points=1
checks.check_max_tokens(require(MAX_TOKENS, "MAX_TOKENS", "Your call: set MAX_TOKENS"),
                        lengths, too_long, context)

# %% [markdown]
# **TODO 5** — implement `clean_conversations(conversations, tokenizer, max_tokens)`: keep the good
# conversations and report each dropped one with its reason.

# %%
limit = require(MAX_TOKENS, "MAX_TOKENS", "Your call: set MAX_TOKENS")
kept, dropped = ex.clean_conversations([r["messages"] for r in dirty], tokenizer, limit)
fig = plots.drop_reasons(Counter(reason for _, reason in dropped), total=len(dirty))
Table([[i, reason, json.dumps(dirty[i]["messages"], ensure_ascii=False)[:90]]
       for i, reason in dropped[:8]], ["index", "reason", "messages"], width=30)

# %% test clean_conversations points=1
checks.check_clean_conversations(ex, tokenizer, dirty, MAX_TOKENS)

# %% test clean_conversations_hidden points=2
# Hidden tests for clean_conversations run here when your work is graded.
### BEGIN HIDDEN TESTS
from course.grading import load_reference

load_reference("step1_data", "hidden_checks").clean_conversations_hidden(
    ex, load_reference("step1_data", "data_exercise"), tokenizer, dirty, lengths, too_long)
### END HIDDEN TESTS

# %% [markdown]
# ### Beyond exact duplicates
#
# An exact check misses a copy with one word changed. **Near-duplicates** are found on sets of
# word 5-grams: two conversations whose sets have a Jaccard similarity (shared / all) of 0.8 or
# more count as one. Comparing every pair is quadratic; **MinHash** estimates the similarity
# from 128 hash minima per text, and locality-sensitive hashing picks the candidate pairs, whose
# exact similarity then decides (`course.dedup`). The evaluation sets need a second check,
# **decontamination**: an item whose text is also in training measures memory, not skill.
#
# Measured on the course data (`benchmarks/results/data_quality.json`): of 12,000 training
# conversations, 1 is a near-duplicate (an exact copy); 1 of 500 validation conversations is a
# training conversation word for word, and no test conversation shares half of its 13-word
# sequences with training. Yet 456 of 500 validation and 918 of 1,000 test conversations share
# at least one 13-word sequence with training — a system prompt, or "Once upon a time, there was
# a little girl named": overlap also finds templates, so count the *share* of an item's n-grams
# and read what it flags.

# %%
from course.dedup import MinHasher, estimated_jaccard, jaccard, shingles

first = "\n".join(m["content"] for m in conversations[0])
edited = first.replace(" the ", " a ", 1)
a, b = shingles(first), shingles(edited)
hasher = MinHasher(128)
print(f"Jaccard of word 5-grams: exact {jaccard(a, b):.2f}, "
      f"MinHash estimate {estimated_jaccard(hasher.signature(a), hasher.signature(b)):.2f}")

# %% [markdown]
# ## 6. Why the format matters
#
# The base model was pretrained on stories (with some plain `Question:` / `Answer:` lines and
# repeated word lists) and has never seen `<|im_start|>`. Give it the same question three ways — the raw text, the Alpaca
# prompt and the ChatML prompt with an open assistant turn — and compare what it writes
# (greedy decoding, at most 30 new tokens, stopping early only at `<|im_end|>`):

# %%
from course.evaluate import generate
from course.models import load_base_model

examples = [] if is_grading() else list(load_split("validation").select(range(3)))  # not graded
model = load_base_model(device="cpu") if examples else None
rows = []
for record in examples:
    user, answer = [t["content"] for t in record["messages"] if t["role"] != "system"][:2]
    instruction, _, story = user.partition("\n\n")
    prompts = [user,
               ex.alpaca_prompt({"instruction": instruction, "input": story, "output": ""}),
               ex.format_conversation([{"role": "user", "content": user}], tokenizer,
                                      add_generation_prompt=True)["text"]]
    rows.append([f"{instruction}\n(expected: {answer})",
                 *generate(model, tokenizer, prompts, max_new_tokens=30)])
Table(rows, ["question", "raw text", "Alpaca prompt", "ChatML prompt"], width=30)

# %% [markdown]
# Read the table row by row. The base model has only ever continued text, so expect it to treat
# every prompt as the start of a story. `<|im_start|>assistant` means nothing to it yet, and it has
# never learnt to write `<|im_end|>`, so it runs on to the token limit. Steps 2 and 3 train it on
# ChatML conversations; the same ChatML prompt then gets a short answer followed by `<|im_end|>`.
#
# The lesson for data: **train and serve with the same template.** A model fine-tuned on ChatML
# and prompted with Alpaca text (or with a missing generation prompt, or a different newline) is
# back to guessing — and the chat template stored with the tokenizer is how libraries keep both
# sides equal.

# %% [markdown]
# ### The template is part of the model
#
# The course's template writes exactly the turns you give it. A real model's template may not.
# Qwen2.5's writes a **default system prompt** — `You are Qwen, created by Alibaba Cloud. You are
# a helpful assistant.` — into every conversation that has no system turn. Measured on 332 real
# conversations (LLaMA-Factory's public demo data) with Qwen2.5's real tokenizer, ChatML by hand
# (your `format_conversation`) equals `apply_chat_template` on **none** of them, and on **all**
# once that prompt is written as an explicit first system turn. The rule the course follows:
# make the template's default explicit in the data, so that every piece — the text built by
# hand, the labels of step 2, the evaluation prompts — sees the conversation the model sees.
# `course.templates.default_system_prompt(tokenizer)` finds it;
# `course.data.load_split(split, tokenizer=...)`, `course.userdata.load_user_file(path,
# tokenizer=...)` and `course.evaluate.chat_prompt` add it.
#
# Other families use other formats, and each has its own surprises:
#
# | template | a turn looks like | without a system turn | ChatML by hand equal |
# |---|---|---|---|
# | the course's | `<\|im_start\|>user\n…<\|im_end\|>\n` | nothing added | yes |
# | Qwen2.5 | the same ChatML | writes its default system prompt | yes, default made explicit |
# | Llama 3.2 | `<\|start_header_id\|>user<\|end_header_id\|>\n\n…<\|eot_id\|>` | always writes a system header with "Cutting Knowledge Date" and today's date | no |
# | Mistral Nemo | `[INST]…[/INST]answer</s>` | — (a system prompt goes into the *last* user turn, and only when that turn is the last message: a training conversation, which ends with an answer, loses it) | no |
# | Gemma 2 | `<start_of_turn>user\n…<end_of_turn>\n` | — (refuses a system turn; trims every content) | no |
#
# So write the text with the model's own template (`apply_chat_template`), and check what it
# adds before you train. **Tool calls** are not part of this course: a record with tool calls
# (ShareGPT `function_call` / `observation` turns, a `tools` column, OpenAI `tool_calls` or
# `tool` turns) is rejected when it is loaded, with its file and line, because each family
# writes tools its own way while everything here is built for system, user and assistant turns
# of text. Records with images are rejected the same way. LLaMA-Factory's newer format is read:
# a content given as a list of text parts (`{"type": "text", "value": ...}`) is joined, and a
# turn's `loss_weight` is the mask — 0 keeps an answer as context without training it, 1 trains
# it; any other weight is rejected, naming its field. To see what a file of your own would
# give: `make validate-data FILE=my_data.jsonl`.

# %% [markdown] checklist
# ## Checklist
#
# - [ ] I can name the three record shapes and turn each into `messages` — Alpaca input joined
#   into the user turn, system prompt kept.
# - [ ] I can write ChatML by hand and say what `<|im_start|>`, `<|im_end|>` and the generation
#   prompt are for.
# - [ ] My `format_conversation` equals `apply_chat_template` on every training conversation.
# - [ ] I can list the defects `clean_conversations` drops, and why each one hurts training.
# - [ ] I chose `MAX_TOKENS` from the length histogram and can justify it.
# - [ ] I can explain why the base model answers raw text, Alpaca and ChatML prompts differently.
# - [ ] I can say what a real model's template adds by itself (Qwen2.5's default system prompt)
#   and why the training data writes it explicitly.
#
# **Grade yourself:** `make grade STEP=step1_data` prints the points of every test and writes a
# feedback page. **Compare** with the answer key:
# [solutions/step1_data/data_exercise.py](../solutions/step1_data/data_exercise.py) and
# [solutions/step1_data/tutorial.ipynb](../solutions/step1_data/tutorial.ipynb).
#
# **Next:** [Step 2 — loss masking](../step2_masking/tutorial.ipynb): labels of `-100` everywhere
# except the assistant's tokens, and why training on the prompt hurts.
