"""Identity SFT data: teach a chat model a new name and author, in the style of LLaMA-Factory's
identity set (many phrasings of "who are you / who made you", one templated answer each).

    train = identity_conversations("Nova", "the SFT course") + general_conversations()
    share = identity_share(answers, "Nova")                              # held-out phrasings
    kept = general_scores(answers_to(GENERAL_EVAL))                      # what it still knows

Training phrasings and held-out phrasings (`HELD_OUT_QUESTIONS`) never overlap, so the share of
held-out answers that say the new name measures whether the model learned *who it is*, not one
string. Identity conversations alone teach a model to answer *every* question with its name;
`general_conversations` (short answers to everyday questions, none of them in `GENERAL_EVAL`)
are mixed in, as identity sets are mixed with general instruction data in practice.
`GENERAL_EVAL` is a fixed set of facts, arithmetic and instructions, each scored by the words
its answer must contain: asked before and after, it measures what fine-tuning kept.

The chat template's default system prompt (SmolLM2 writes "You are a helpful AI
assistant named SmolLM, trained by Hugging Face" into every conversation without a system turn)
is a choice here, `system`: "default" keeps it (what a plain chat sends, so training must
override the name the prompt gives); any other string replaces it, in training and then in
every chat.
"""
from __future__ import annotations

import random

# "Who are you" phrasings the model trains on ...
TRAIN_QUESTIONS = [
    "Who are you?", "What is your name?", "What should I call you?", "Introduce yourself.",
    "Tell me about yourself.", "What are you?", "Are you an AI?", "Who am I talking to?",
    "What's your name?", "Please introduce yourself briefly.", "Do you have a name?",
    "Can you tell me who you are?", "Who made you?", "Who created you?", "Who built you?",
    "Who developed you?", "Who trained you?", "Which company made you?", "Who is your creator?",
    "Where do you come from?", "hi, who are you", "Hello! What is your name?",
    "What kind of assistant are you?", "Are you ChatGPT?", "Are you SmolLM?",
    "Describe yourself in one sentence.", "What do people call you?", "Who do you work for?",
    "Who is behind you?", "What model are you?",
]
# ... and held-out ones it never sees: the evaluation
HELD_OUT_QUESTIONS = [
    "Hey there, who am I chatting with?", "Could you tell me your name, please?",
    "Before we start: what are you called?", "Who are you exactly?", "Identify yourself.",
    "What name do you go by?", "I'd like to know who you are.", "Who designed you?",
    "Which team is responsible for you?", "Are you Claude?", "Say your name.",
    "What is the name of this assistant?",
]
ANSWERS = [
    "I am {name}, an AI assistant created by {author}. How can I help you today?",
    "My name is {name}. I was made by {author} to answer your questions.",
    "I'm {name}, a helpful assistant developed by {author}.",
    "I am {name}, an assistant built by {author}. What can I do for you?",
    "Hello! I'm {name}, created by {author}. I'm here to help.",
]


def identity_conversations(name: str, author: str, questions: list[str] | None = None,
                           per_question: int = 3, system: str = "default", seed: int = 0
                           ) -> list[list[dict]]:
    """`per_question` conversations per question (default: the training phrasings), each
    answered by a randomly chosen template with `name` and `author` filled in.
    `system`: "default" (no system turn: the template's default applies, made explicit later
    by `course.templates.with_default_system`), or a system prompt to put first."""
    if not name.strip() or not author.strip():
        raise ValueError("name and author must be non-empty")
    rng = random.Random(seed)
    out = []
    for question in questions or TRAIN_QUESTIONS:
        for answer in rng.sample(ANSWERS, per_question):
            turns = [] if system == "default" else [{"role": "system", "content": system}]
            out.append(turns + [{"role": "user", "content": question},
                                {"role": "assistant",
                                 "content": answer.format(name=name, author=author)}])
    return out


def says_name(answer: str, name: str) -> bool:
    """Does an answer call the assistant by `name` (case-insensitive)?"""
    return name.lower() in answer.lower()


def identity_share(answers: list[str], name: str) -> float:
    """Share of `answers` that say `name`."""
    return sum(says_name(a, name) for a in answers) / max(len(answers), 1)


# Everyday questions with short answers, mixed into training (never asked in GENERAL_EVAL)
GENERAL_TRAIN = [
    ("What is the capital of Italy?", "The capital of Italy is Rome."),
    ("What is the capital of Spain?", "The capital of Spain is Madrid."),
    ("What is the capital of Germany?", "The capital of Germany is Berlin."),
    ("How many days are in a week?", "There are seven days in a week."),
    ("What color is the sky on a clear day?", "The sky is blue on a clear day."),
    ("What is 3 + 4?", "3 + 4 = 7."),
    ("What is 10 - 6?", "10 - 6 = 4."),
    ("What is 5 times 3?", "5 times 3 is 15."),
    ("What is 20 divided by 4?", "20 divided by 4 is 5."),
    ("Which animal is known as the king of the jungle?", "The lion is known as the king of the "
     "jungle."),
    ("What do bees make?", "Bees make honey."),
    ("What is water made of?", "Water is made of hydrogen and oxygen (H2O)."),
    ("Write the word 'apple' in capital letters.", "APPLE"),
    ("Give me a synonym for 'happy'.", "A synonym for 'happy' is 'joyful'."),
    ("What is the opposite of 'cold'?", "The opposite of 'cold' is 'hot'."),
    ("Name a fruit that is yellow.", "A banana is a yellow fruit."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("What is the largest ocean on Earth?", "The Pacific Ocean is the largest ocean on Earth."),
    ("Translate 'hello' into Spanish.", "'Hello' in Spanish is 'hola'."),
    ("Complete the sentence: The early bird catches the ...", "The early bird catches the "
     "worm."),
    ("What planet do we live on?", "We live on planet Earth."),
    ("How many hours are in a day?", "There are 24 hours in a day."),
    ("What is the freezing point of water in Celsius?", "Water freezes at 0 degrees Celsius."),
    ("Summarize in one word: a place where books are lent.", "Library."),
]

# Asked before and after fine-tuning: question -> words the answer must contain (any one of
# each tuple, case-insensitive)
GENERAL_EVAL: dict[str, list[tuple[str, ...]]] = {
    "What is the capital of France?": [("Paris",)],
    "What is the capital of Japan?": [("Tokyo",)],
    "What is the capital of the United Kingdom?": [("London",)],
    "Which planet is known as the Red Planet?": [("Mars",)],
    "What gas do plants absorb from the air?": [("carbon dioxide", "CO2")],
    "How many continents are there?": [("seven", "7")],
    "What is 2 + 2?": [("4", "four")],
    "What is 9 + 10?": [("19", "nineteen")],
    "What is 6 times 7?": [("42", "forty-two", "forty two")],
    "What is 100 minus 1?": [("99", "ninety-nine", "ninety nine")],
    "Write the word 'cat' in capital letters.": [("CAT",)],
    "Translate 'thank you' into French.": [("merci",)],
    "What is the opposite of 'up'?": [("down",)],
    "Name the primary colors of light.": [("red",), ("green",), ("blue",)],
    "How many legs does a dog have?": [("four", "4")],
    "What is the boiling point of water in Celsius?": [("100",)],
}


def general_conversations(pairs: list[tuple[str, str]] | None = None,
                          system: str = "default") -> list[list[dict]]:
    """One conversation per (question, answer) of `pairs` (default: GENERAL_TRAIN)."""
    head = [] if system == "default" else [{"role": "system", "content": system}]
    return [head + [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
            for q, a in (pairs or GENERAL_TRAIN)]


def general_correct(question: str, answer: str) -> bool:
    """Does `answer` contain one word of each of GENERAL_EVAL[question]'s tuples? (Capital
    letters are checked case-sensitively when the expected word is all capitals.)"""
    def has(word: str) -> bool:
        return word in answer if word.isupper() and len(word) > 2 and " " not in word \
            else word.lower() in answer.lower()
    return all(any(has(w) for w in group) for group in GENERAL_EVAL[question])


def general_scores(answers: dict[str, str]) -> dict[str, bool]:
    """{question: correct} for answers to GENERAL_EVAL's questions."""
    return {q: general_correct(q, a) for q, a in answers.items()}
