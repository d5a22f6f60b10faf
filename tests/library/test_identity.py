"""course.identity: the identity SFT data (training and held-out phrasings never overlap), the
everyday questions mixed into training (none of them evaluated), and the scoring."""
from __future__ import annotations

import pytest

from course import identity


def test_training_and_held_out_phrasings_are_disjoint():
    train = {q.lower() for q in identity.TRAIN_QUESTIONS}
    held_out = {q.lower() for q in identity.HELD_OUT_QUESTIONS}
    assert len(train) == len(identity.TRAIN_QUESTIONS) and not train & held_out
    general_train = {q.lower() for q, _ in identity.GENERAL_TRAIN}
    assert not general_train & {q.lower() for q in identity.GENERAL_EVAL}


def test_conversations_carry_the_new_name_and_author():
    data = identity.identity_conversations("Nova", "the SFT course", per_question=2)
    assert len(data) == 2 * len(identity.TRAIN_QUESTIONS)
    for messages in data:
        assert [m["role"] for m in messages] == ["user", "assistant"]
        assert "Nova" in messages[1]["content"] and "the SFT course" in messages[1]["content"]
    own = identity.identity_conversations("Nova", "me", system="Be brief.")
    assert all(m[0] == {"role": "system", "content": "Be brief."} for m in own)
    assert identity.identity_conversations("Nova", "me", seed=1) != \
        identity.identity_conversations("Nova", "me", seed=2)
    with pytest.raises(ValueError, match="non-empty"):
        identity.identity_conversations(" ", "me")
    general = identity.general_conversations()
    assert len(general) == len(identity.GENERAL_TRAIN)


def test_scoring():
    assert identity.identity_share(["I am nova.", "I'm SmolLM.", "NOVA here"], "Nova") == \
        pytest.approx(2 / 3)
    correct = identity.general_correct
    assert correct("What is 6 times 7?", "6 times 7 is 42.")
    assert not correct("What is 6 times 7?", "It is 48.")
    assert correct("Name the primary colors of light.", "Red, green and blue.")
    assert not correct("Name the primary colors of light.", "Red and blue.")
    assert correct("Write the word 'cat' in capital letters.", "CAT")
    assert not correct("Write the word 'cat' in capital letters.", "cat")
    scores = identity.general_scores({"What is 2 + 2?": "4", "What is 9 + 10?": "21"})
    assert scores == {"What is 2 + 2?": True, "What is 9 + 10?": False}
