"""The README starts with the two set-up commands, and CI runs the second."""
import os

from conftest import ROOT

RUN = "pip install -e . && python -m engine"
TEST = "pip install -e '.[test]' && python -m pytest"


def test_readme_starts_with_the_two_commands_and_ci_runs_the_test_one():
    lines = [l.strip() for l in open(os.path.join(ROOT, "README.md")).read().splitlines()[:2]]
    assert lines == [RUN, TEST]
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    assert TEST in ci
    assert "exit 5" in ci or "-eq 5" in ci  # pytest's "no tests ran" cannot pass silently
