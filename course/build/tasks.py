"""Instruction tasks grounded in generated stories, with answers that can be checked exactly.

Each task turns a `StoryFacts` into (question, answer). Answers are short sentences that reuse the
story's own phrases ("She went to the park."), so a model can copy words it has just read.
"""
from __future__ import annotations

import random
from typing import Callable

from course.build.stories import PLACES, StoryFacts

QA = tuple[str, str]


def _she(f: StoryFacts) -> str:
    return f.pronoun.capitalize()


def task_main_character(f: StoryFacts, rng: random.Random) -> QA:
    q = rng.choice(["Who is the main character of the story?", "Who is this story about?",
                    "Name the main character."])
    return q, f"The story is about {f.name}."


def task_friend(f: StoryFacts, rng: random.Random) -> QA:
    q = rng.choice([f"Who is {f.name}'s friend?", f"Who was with {f.name}?",
                    f"What is the name of {f.name}'s friend?"])
    return q, f"{f.possessive.capitalize()} friend is {f.friend}."


def task_place(f: StoryFacts, rng: random.Random) -> QA:
    q = rng.choice([f"Where did {f.name} go?", f"Which place did {f.name} visit?",
                    f"Where did the story happen?"])
    return q, f"{_she(f)} went to the {f.place}."


def task_found(f: StoryFacts, rng: random.Random) -> QA:
    q = rng.choice(["What did they find?", f"What did {f.name} find?",
                    "What was found in the story?"])
    return q, f"They found a {f.color} {f.thing}."


def task_count(f: StoryFacts, rng: random.Random) -> QA:
    q = rng.choice([f"How many {f.items} did {f.name} pick up?",
                    f"How many {f.items} were picked up?"])
    return q, f"{_she(f)} picked up {f.count} {f.items}."


def task_feeling(f: StoryFacts, rng: random.Random) -> QA:
    q = rng.choice([f"How did {f.name} feel at the end?", f"How did {f.name} feel?",
                    "What was the feeling at the end of the story?"])
    return q, f"{_she(f)} felt {f.feeling}."


def task_yes_no(f: StoryFacts, rng: random.Random) -> QA:
    asked = f.place if rng.random() < 0.5 else rng.choice([p for p in PLACES if p != f.place])
    q = f"Did {f.name} go to the {asked}?"
    # Fact first, verdict last: the model copies the place, then compares it with the question.
    verdict = "yes" if asked == f.place else "no"
    return q, f"{_she(f)} went to the {f.place}, so the answer is {verdict}."


def task_two_names(f: StoryFacts, rng: random.Random) -> QA:
    q = rng.choice(["Which two children are in the story?", "Name the two children.",
                    "Who are the children in the story?"])
    return q, f"The two children are {f.name} and {f.friend}."


def task_summary(f: StoryFacts, rng: random.Random) -> QA:
    q = rng.choice(["Summarize the story in one sentence.", "Give a one-line summary.",
                    "Sum up the story in one line."])
    return q, f"A {f.gender} named {f.name} went to the {f.place} and felt {f.feeling}."


def task_story_opening(f: StoryFacts, rng: random.Random) -> QA:
    """The one task without a story as input: the instruction alone carries what is needed."""
    q = rng.choice([f"Write the first sentence of a story about a {f.gender} named {f.name}.",
                    f"Begin a story about a {f.gender} called {f.name}."])
    return q, f"Once upon a time, there was a little {f.gender} named {f.name}."


TASKS: dict[str, Callable[[StoryFacts, random.Random], QA]] = {
    "main_character": task_main_character,
    "friend": task_friend,
    "place": task_place,
    "found": task_found,
    "count": task_count,
    "feeling": task_feeling,
    "yes_no": task_yes_no,
    "two_names": task_two_names,
    "summary": task_summary,
    "story_opening": task_story_opening,
}
#: tasks whose user turn carries no story (an Alpaca record with an empty `input`)
NO_STORY_TASKS = frozenset({"story_opening"})

SYSTEM_PROMPTS = [
    "You are a helpful assistant that answers questions about short stories.",
    "You are a friendly reading tutor. Answer in one short sentence.",
    "Read the story carefully and answer the question.",
]
