"""Bad input: one line naming the fix, exit code 2, no traceback."""
import pytest

from conftest import find_dbs, run_engine

BAD = [
    (["--parallel", "0"], "--parallel"),
    (["--parallel", "x"], "--parallel"),
    (["--number", "-3"], "--number"),
    (["--rate", "0"], "--rate"),
    (["--top-p", "1.5"], "--top-p"),
    (["--temperature", "-1"], "--temperature"),
    (["--read-timeout", "nan"], "--read-timeout"),
    (["--url", "localhost:8000"], "--url"),
    (["--url", "http://127.0.0.1:9/v1/chat/completions", "--parallel", "1", "2", "3", "--number", "1", "2"],
     "--number has 2 values"),
    (["--extra-args", "{not json"], "--extra-args"),
    (["--extra-args", "[1, 2]"], "--extra-args must be a JSON object"),
    (["--headers", "novalue"], "--headers"),
    (["--api", "opnai", "--url", "http://127.0.0.1:9/v1/chat/completions"], "unknown --api 'opnai'; available: "),
    (["--dataset", "nope", "--url", "http://127.0.0.1:9/v1/chat/completions"], "unknown --dataset 'nope'"),
    (["--dataset", "line_by_line", "--url", "http://127.0.0.1:9/v1/chat/completions"], "--dataset-path"),
    (["--dataset-path", "/no/such/file.txt", "--url", "http://127.0.0.1:9/v1/chat/completions"],
     "'/no/such/file.txt' not found"),
    (["--min-prompt-length", "50", "--max-prompt-length", "10"], "--min-prompt-length"),
    (["--no-such-flag"], "unrecognized arguments"),
]


@pytest.mark.parametrize("argv,expected", BAD, ids=[" ".join(a)[:40] for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(argv, expected, tmp_path):
    proc = run_engine(*argv, "--outputs-dir", tmp_path / "out", check=False, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("servegauge: error: ") and expected in lines[0]
    assert "Traceback" not in proc.stderr
    # nothing is left behind by a run that never started
    assert find_dbs(tmp_path) == []


def test_debug_shows_the_traceback(tmp_path):
    proc = run_engine("--api", "opnai", "--url", "http://127.0.0.1:9/v1/chat/completions", "--debug",
                      check=False, timeout=60)
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_help_explains_flags():
    out = run_engine("--help").stdout
    for flag in ("--url", "--parallel", "--number", "--rate", "--burstiness", "--workers", "--dataset-path",
                 "--max-tokens", "--no-stream", "--extra-args", "--warmup-num", "--duration", "--outputs-dir"):
        assert flag in out


def test_a_run_never_overwrites_a_database(tmp_path, mock):
    args = ["--url", mock.chat_url, "--number", 2, "--outputs-dir", tmp_path, "--no-timestamp", "--name", "same"]
    run_engine(*args)
    (db,) = find_dbs(tmp_path)
    before = open(db, "rb").read()
    proc = run_engine(*args, check=False)
    assert proc.returncode == 2 and "already exists" in proc.stderr
    assert open(db, "rb").read() == before


@pytest.mark.parametrize("unbuffered", ["1", ""])
def test_a_reader_that_leaves_is_not_an_error(unbuffered):
    """`servegauge plugins | head -1`: no error line, and 141 as for SIGPIPE."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = unbuffered
    proc = subprocess.Popen([sys.executable, "-m", "engine", "plugins"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            env=env)
    proc.stdout.close()  # the reader is gone before the first line
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert (proc.returncode, err) == (141, b"")


def test_n_is_short_for_number():
    from engine.options import parse_run_args

    runs, _ = parse_run_args(["--url", "http://127.0.0.1:9/v1/chat/completions", "-n", "7", "--parallel", "2"])
    assert [r.number for r in runs] == [7]
    runs, extra = parse_run_args(["--url", "http://127.0.0.1:9/v1/chat/completions", "-n", "1", "2",
                                  "--parallel", "1", "2", "--no-test-connection"])
    assert [r.number for r in runs] == [1, 2] and extra.test_connection is False


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the point: Python drops it
def test_a_signal_lost_in_a_finaliser_is_still_acted_on():
    """Python prints and drops a KeyboardInterrupt raised inside a __del__; the
    count the handler keeps first is what the run's loops and the command
    line act on (engine.interrupts)."""
    import gc
    import os
    import signal

    from engine import interrupts

    class Finalised:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # the handler runs here, and its exception goes nowhere
                pass

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    interrupts.install()
    try:
        interrupts.reset()
        Finalised()
        gc.collect()
        assert interrupts.requested() == 1 and not interrupts.terminated()
        with pytest.raises(KeyboardInterrupt):
            interrupts.raise_if_requested()
        with interrupts.deferred():  # during a run: counted, not raised
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):
                pass
        assert interrupts.requested() == 2 and interrupts.terminated()
    finally:
        interrupts.reset()
        for s, handler in saved.items():
            signal.signal(s, handler)
