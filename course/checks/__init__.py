"""Visible checks, one module per step (`course.checks.step1_data`, ...).

Each check takes the learner's exercise module (or a value the notebook computed), tries it on
small labelled examples, prints one line per thing that passed, and raises
`course.grading.CheckFailed` naming the classic mistake when something is off.
"""
