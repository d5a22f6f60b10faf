"""Seeded generator of simple English stories (TinyStories-like), standard library only.

Every story is built from a `StoryFacts` record, so instruction tasks can ask about it and check
the answer exactly. Same seed -> byte-identical output (no set iteration, no hash randomisation).

Design note (measured, see docs/BASE_MODEL.md): answers later copy phrases of the story *with their
leading space* ("She went to the park." copies " park"), because a word at the start of a line is
tokenised differently from the same word inside a sentence.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass

# --- names: a syllable generator, not a list ----------------------------------------------------
ONSETS = ["b", "br", "d", "dr", "f", "fl", "g", "gl", "gr", "h", "j", "k", "kl", "l", "m", "n",
          "p", "pl", "pr", "r", "s", "sk", "sl", "sn", "st", "t", "tr", "v", "w", "z", "ch", "sh"]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ee", "oo", "ou", "ia", "y"]
CODAS = ["", "", "", "n", "l", "r", "s", "x", "m", "k", "th", "nd", "rt"]


def make_names(n: int, seed: int) -> list[str]:
    """Return `n` distinct capitalised names of 2-3 syllables, in a seeded random order."""
    rng = random.Random(seed)
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        syllables = rng.choice((2, 2, 3))
        name = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) for _ in range(syllables))
        name = (name + rng.choice(CODAS)).capitalize()
        if 4 <= len(name) <= 10 and name not in seen:
            seen.add(name)
            names.append(name)
    return names


# --- the world -----------------------------------------------------------------------------------
PLACES = ["park", "beach", "forest", "garden", "lake", "farm", "market", "library", "river",
          "hill", "zoo", "school"]
THINGS = ["ball", "kite", "box", "hat", "book", "shell", "key", "cup", "drum", "toy", "map",
          "bell"]
COLORS = ["red", "blue", "green", "yellow", "pink", "brown", "white", "black"]
ITEMS = ["apples", "stones", "flowers", "leaves", "cookies", "shells", "sticks", "berries",
         "feathers", "coins"]
FEELINGS = ["happy", "sad", "tired", "proud", "scared", "excited", "calm", "angry", "sleepy",
            "surprised"]
WEATHER = ["The sun was warm.", "The sky was grey.", "It was a windy day.", "It was a cold day.",
           "The air was fresh.", "It was a sunny morning."]
ANIMALS = ["a dog", "a cat", "a bird", "a frog", "a duck", "a rabbit"]
ACTIVITIES = ["They played a game.", "They sang a song.", "They ran in circles.",
              "They told jokes.", "They looked at the clouds.", "They had a picnic."]
NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight",
                9: "nine"}


@dataclass(frozen=True)
class StoryFacts:
    """Everything a question can ask about one story."""

    name: str
    gender: str  # "girl" | "boy"
    friend: str
    place: str
    color: str
    thing: str
    count: str  # a number word, "two" to "nine" (NUMBER_WORDS)
    items: str
    feeling: str
    template: int

    @property
    def pronoun(self) -> str:
        return "she" if self.gender == "girl" else "he"

    @property
    def possessive(self) -> str:
        return "her" if self.gender == "girl" else "his"

    def to_dict(self) -> dict:
        return asdict(self)


def _cap(sentence: str) -> str:
    return sentence[0].upper() + sentence[1:]


def render_story(f: StoryFacts, rng: random.Random) -> str:
    """Write the story for `f`. The key phrases are fixed so answers can copy them:
    "went to the {place}", "found a {color} {thing}", "picked up {count} {items}", "felt {feeling}".
    """
    she, her = f.pronoun, f.possessive
    weather = rng.choice(WEATHER)
    animal = rng.choice(ANIMALS)
    activity = rng.choice(ACTIVITIES)
    t = f.template
    if t == 0:
        s = [f"Once upon a time, there was a little {f.gender} named {f.name}.",
             f"{_cap(she)} loved to play outside.",
             f"One day, {f.name} went to the {f.place} with {her} friend {f.friend}.",
             weather,
             f"At the {f.place}, they found a {f.color} {f.thing}.",
             f"{f.name} picked up {f.count} {f.items}.",
             activity,
             f"At the end of the day, {f.name} felt {f.feeling}."]
    elif t == 1:
        s = [f"{f.name} was a small {f.gender} who lived in a little house.",
             f"{f.name} had a friend called {f.friend}.",
             weather,
             f"In the morning, {f.name} and {f.friend} went to the {f.place}.",
             f"They saw {animal} near the path.",
             f"{_cap(she)} picked up {f.count} {f.items} and put them in a bag.",
             f"Then they found a {f.color} {f.thing} under a tree.",
             f"When they came home, {f.name} felt {f.feeling}."]
    elif t == 2:
        s = [f"There once was a {f.gender} named {f.name}.",
             weather,
             f"{f.name} wanted an adventure, so {she} went to the {f.place}.",
             f"On the way, {she} met {f.friend}.",
             f"{f.friend} said, \"Look, there is {animal}!\"",
             f"Near the water, they found a {f.color} {f.thing}.",
             f"{f.name} picked up {f.count} {f.items} to take home.",
             activity,
             f"That night, {f.name} felt {f.feeling}."]
    elif t == 3:
        s = [f"{f.name} and {f.friend} were best friends.",
             f"{f.name} was a kind {f.gender} with a big smile.",
             f"One morning, {f.name} went to the {f.place}.",
             f"{f.friend} came too.",
             f"They picked up {f.count} {f.items} together.",
             activity,
             f"Later, they found a {f.color} {f.thing}.",
             f"{f.name} felt {f.feeling} and went home."]
    elif t == 4:
        s = [f"In a small town lived a {f.gender} named {f.name}.",
             f"Every day, {f.name} played with {f.friend}.",
             weather,
             f"One afternoon, {f.name} went to the {f.place}.",
             f"{f.friend} ran after {f.name}.",
             f"They found a {f.color} {f.thing} on the ground.",
             f"They saw {animal} and laughed.",
             f"{f.name} picked up {f.count} {f.items}.",
             f"In the evening, {f.name} felt {f.feeling}."]
    else:
        s = [f"This is a story about a {f.gender} named {f.name}.",
             f"{f.name} liked to explore.",
             f"One day, {f.name} and {f.friend} went to the {f.place}.",
             f"{_cap(she)} found a {f.color} {f.thing} by a big rock.",
             weather,
             f"{f.friend} helped {f.name}, and {f.name} picked up {f.count} {f.items}.",
             activity,
             f"After that, {f.name} felt {f.feeling}."]
    return " ".join(s)


N_TEMPLATES = 6


# Counts are written as words: "picked up three coins". A digit is split off from its space by
# the tokenizer (" 3" -> " ", "3"); a number word is one token, like a feeling or a place, so
# reading a count is the same one-token copy as reading a feeling (docs/BASE_MODEL.md).
NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight",
                9: "nine"}


def sample_facts(rng: random.Random, names: list[str]) -> StoryFacts:
    """Draw one story's facts; main character and friend are two different names from `names`."""
    name, friend = rng.sample(names, 2)
    return StoryFacts(
        name=name, gender=rng.choice(("girl", "boy")), friend=friend,
        place=rng.choice(PLACES), color=rng.choice(COLORS), thing=rng.choice(THINGS),
        count=NUMBER_WORDS[rng.randint(2, 9)], items=rng.choice(ITEMS), feeling=rng.choice(FEELINGS),
        template=rng.randrange(N_TEMPLATES))


def generate_stories(n: int, names: list[str], seed: int) -> list[tuple[StoryFacts, str]]:
    """Return `n` (facts, text) pairs drawn with `seed` from the given name pool."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        facts = sample_facts(rng, names)
        out.append((facts, render_story(facts, rng)))
    return out


def retelling(f: StoryFacts, rng: random.Random | None = None) -> str:
    """A plain-text retelling that repeats every fact with the story's own cue words
    ("went to the", "found a", "picked up", "felt"). In a story each of these facts occurs once,
    so nothing in story text rewards copying them; a retelling does, which is how the model
    learns to copy any word it has read, not only names. `rng` shuffles the sentences."""
    she = f.pronoun.capitalize()
    sentences = [f"{f.name} went to the {f.place} with {f.friend}.",
                 f"{she} found a {f.color} {f.thing}.",
                 f"{she} picked up {f.count} {f.items}.",
                 f"{she} felt {f.feeling}."]
    if rng is not None:
        rng.shuffle(sentences)
    return "In short: " + " ".join(sentences)
