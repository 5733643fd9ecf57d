"""What the command says before it runs anything: its name in every usage
line, flag units in --help, the refusal to start when `python -m engine`
would import someone else's `analysis` or `plugins`, and which flags an
empty dataset blames."""
import pytest

from conftest import ROOT, run_engine
from test_plugins_datasets import assert_one_line_error

DEAD_URL = "http://127.0.0.1:9/v1/chat/completions"


@pytest.mark.parametrize("sub", ["", "mock", "plugins", "report", "compare"])
def test_every_usage_line_names_the_program_one_way(sub):
    proc = run_engine(*([sub] if sub else []), "--help", timeout=60)
    assert proc.stdout.startswith(f"usage: servegauge {sub}".rstrip() + " "), proc.stdout[:80]


@pytest.mark.parametrize("sub", ["", "mock", "plugins", "report", "compare"])
def test_every_subcommand_says_a_bad_flag_in_one_line(sub):
    """One parser for every subcommand (engine.usage.CommandParser): a flag it
    does not know is one line that names it and where help is, exit 2, no
    usage block and no traceback."""
    positional = {"report": ["run"], "compare": ["a", "b"]}.get(sub, [])  # so the flag is what is wrong
    proc = run_engine(*([sub] if sub else []), *positional, "--no-such-flag", timeout=60, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "--no-such-flag" in lines[0] and f"(see servegauge {sub}".replace("  ", " ").rstrip() in lines[0]
    assert lines[0].startswith(f"servegauge{' ' + sub if sub in ('report', 'compare') else ''}: error: "), lines[0]


def test_prompt_length_flags_say_their_unit():
    text = " ".join(run_engine("--help", timeout=60).stdout.split())
    for flag in ("--min-prompt-length", "--max-prompt-length"):
        help_text = text.split(f"{flag} {flag.lstrip('-').upper().replace('-', '_')} ", 1)[1][:120]
        assert "tokens with --tokenizer-path, else characters" in help_text, help_text


@pytest.mark.parametrize("decoy", ["analysis/__init__.py", "plugins/__init__.py", "plugins.py"])
def test_python_m_engine_refuses_a_folder_that_shadows_its_packages(tmp_path, decoy):
    path = tmp_path / decoy
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("raise SystemExit('the decoy was imported')\n")
    name = decoy.split("/")[0].removesuffix(".py")
    proc = run_engine("--url", DEAD_URL, "--number", 1, "--outputs-dir", tmp_path / "out", cwd=tmp_path,
                      check=False, timeout=60)
    line = assert_one_line_error(proc, f"'{name}'", str(tmp_path / name), "servegauge` command")
    assert str(__import__("os").path.join(ROOT, name)) in line
    assert not (tmp_path / "out").exists()


def test_python_m_engine_runs_from_a_folder_without_decoys(tmp_path):
    (tmp_path / "engine_notes").mkdir()  # an unrelated folder is no reason to refuse
    proc = run_engine("plugins", cwd=tmp_path, timeout=60)
    assert "openai" in proc.stdout


def test_an_empty_dataset_file_blames_only_the_flags_given(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    argv = ["--url", DEAD_URL, "--dataset-path", empty, "--number", 1, "--outputs-dir", tmp_path / "out"]
    line = assert_one_line_error(run_engine(*argv, check=False, timeout=60), "yielded no prompts", str(empty))
    assert "prompt-length" not in line
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("tiny\n")
    argv = ["--url", DEAD_URL, "--dataset-path", tiny, "--number", 1, "--outputs-dir", tmp_path / "out"]
    line = assert_one_line_error(run_engine(*argv, "--min-prompt-length", 100, check=False, timeout=60),
                                 "yielded no prompts", "--min-prompt-length 100", "characters")
    assert "--max-prompt-length" not in line
