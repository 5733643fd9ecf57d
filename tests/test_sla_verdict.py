"""A point's verdict with confidence (analysis.sla) and the search driver's
handling of points too close to call (engine.sla_tune), on real runs' databases."""
import json
import math

import pytest

from analysis.sla import FAIL, PASS, UNSURE, Condition, PointVerdict, judge_point, parse_sla_params
from analysis.sla_report import answers, search_json
from analysis.stats import nearest_rank
from conftest import find_dbs, run_engine, rows
from engine.arguments import Arguments
from engine.sla_options import SlaOptions
from engine.sla_tune import tune


def test_parse_sla_params_reads_evalscope_conditions():
    groups = parse_sla_params('[{"p99_ttft": "<=0.3", "avg_tpot": "< 0.05"}, {"rps": ">=2"}, {"p50_itl": ">0.001"}]')
    assert groups == [(Condition("p99_ttft", "<=", 0.3), Condition("avg_tpot", "<", 0.05)),
                      (Condition("rps", ">=", 2.0),), (Condition("p50_itl", ">", 0.001),)]
    assert parse_sla_params('[{"tps": "max"}]') == [(Condition("tps", "max"),)]
    assert Condition("p99_ttft", "<=", 0.3).text() == "p99 TTFT ≤ 300 ms"


@pytest.mark.parametrize("text,needle", [
    ("not json", "not valid JSON"), ("[]", "JSON list"), ('[{"p99_ttfx": "<=1"}]', "p99_ttfx"),
    ('[{"p99_ttft": "=<1"}]', "=<1"), ('[{"tps": "max"}, {"rps": "max"}]', "only condition"),
])
def test_parse_sla_params_names_what_is_wrong(text, needle):
    with pytest.raises(ValueError, match=needle):
        parse_sla_params(text)


@pytest.fixture(scope="module")
def boundary_runs(tmp_path_factory):
    """Five runs of one load: an open loop at 60 req/s (Poisson) on 4 slots of
    55 ms each (ρ ≈ 0.8), so TTFT varies from request to request and run to run."""
    from engine.mock.launch import start_mock

    out = tmp_path_factory.mktemp("boundary")
    with start_mock(["--slots", "4", "--ttft-ms", "20", "--itl-ms", "5", "--tokens", "8"]) as mock:
        run_engine("--url", mock.chat_url, "--model", "m", "--parallel", "64", "--rate", "60", "--number",
                   "50", "51", "52", "53", "54", "--workers", "1", "--outputs-dir", out, "--no-timestamp",
                   "--no-plots", "--no-test-connection")
    dbs = find_dbs(out)
    assert len(dbs) == 5
    return dbs


def ttft_s(db):
    return [r["first_chunk_latency"] for r in rows(db) if r["success"] == 1]


def test_a_point_at_the_boundary_is_too_close_to_call_not_a_coin_flip(boundary_runs):
    # The SLO set exactly at the point's p50 TTFT over all five runs: each run
    # alone (one search's verdict on this point) straddles it.
    pooled = [x for db in boundary_runs for x in ttft_s(db)]
    threshold = nearest_rank(pooled, ["50%"])[0]
    cond = Condition("p50_ttft", "<=", threshold)
    judged = [judge_point(60, [db], [cond], confidence=0.99) for db in boundary_runs]
    verdicts = [p.verdict for p in judged]
    # never a confident pass in one search and a confident fail in another
    assert not (PASS in verdicts and FAIL in verdicts), verdicts
    assert verdicts.count(UNSURE) >= 3, verdicts
    for p in judged:  # every interval is a real interval around its estimate
        j = p.judged[0]
        assert j.low <= j.estimate <= j.high and math.isfinite(j.low) and math.isfinite(j.high)
    # the five pooled: every value counts once, and the point stays too close to call
    five = judge_point(60, boundary_runs, [cond], confidence=0.99)
    assert five.judged[0].n == len(pooled) and five.runs == 5
    assert five.verdict == UNSURE


def test_far_thresholds_get_confident_verdicts(boundary_runs):
    times = ttft_s(boundary_runs[0])
    easy = Condition("p50_ttft", "<=", max(times) * 2)
    hard = Condition("p50_ttft", "<=", min(times) / 2)
    assert judge_point(60, boundary_runs[:1], [easy]).verdict == PASS
    assert judge_point(60, boundary_runs[:1], [hard]).verdict == FAIL
    assert judge_point(60, boundary_runs[:1], [easy, hard]).verdict == FAIL  # a group is all of its conditions
    # rps: the runs' throughputs; a floor far below them passes, one far above fails
    assert judge_point(60, boundary_runs, [Condition("rps", ">=", 1.0)]).verdict == PASS
    assert judge_point(60, boundary_runs, [Condition("rps", ">=", 1000.0)]).verdict == FAIL


def test_a_point_with_a_failed_request_fails(tmp_path):
    from engine.mock.launch import start_mock

    with start_mock(["--ttft-ms", "5", "--itl-ms", "1", "--tokens", "4", "--fault", "http500=0.5",
                     "--fault-seed", "1"]) as mock:
        run_engine("--url", mock.chat_url, "--model", "m", "--parallel", "2", "--number", "10", "--workers", "1",
                   "--outputs-dir", tmp_path, "--no-timestamp", "--no-plots", "--no-test-connection", check=False)
    (db,) = find_dbs(tmp_path)
    p = judge_point(2, [db], [Condition("p50_ttft", "<=", 100.0)])
    assert p.failed > 0 and p.verdict == FAIL


def sla(**changes):
    base = dict(variable="parallel", groups=((Condition("p99_ttft", "<=", 0.3),),), start=1, lower=1, upper=64,
                num_runs=2, max_runs=5, number_multiplier=2.0, fixed_parallel=64, confidence=0.95,
                rate_tolerance=0.1)
    base.update(changes)
    return SlaOptions(**base)


def test_a_point_too_close_to_call_gets_more_runs_then_counts_as_not_passing(tmp_path):
    made = []

    def run_point(args, label):
        made.append((args.parallel, args.number, args.seed))
        return f"{args.sweep_dir}/db"

    def judge(value, dbs, group):  # 5 passes; 6 stays uncertain however many runs; above fails
        verdict = PASS if value <= 5 else UNSURE if value == 6 else FAIL
        return PointVerdict(value, len(dbs), 10 * len(dbs), 0, (), verdict)

    (search,) = tune(Arguments(), sla(), str(tmp_path), run_point, judge)
    assert (search.step.best_pass, search.step.first_fail) == (5, 6)
    assert search.points[6].runs == 5  # grew from --sla-num-runs 2 to the cap
    assert all(p.runs == 2 for v, p in search.points.items() if v != 6)
    assert len(made) == len(set(made))  # no run made twice; each run of a point its own seed
    assert (6, 12, 4) in made  # number = round(6 x 2), the fifth run's seed
    (line,) = answers([search], "parallel", 0.95, 1)
    assert line.startswith("max parallel 5 meets p99 TTFT ≤ 300 ms")
    assert "6 is too close to call" in line
    doc = json.loads(json.dumps(search_json([search], "parallel", 0.95, 1, {})))
    assert doc["groups"][0]["best"] == 5 and doc["groups"][0]["points"][-1]["verdict"] in (PASS, FAIL, UNSURE)


def test_the_plot_and_the_report_block_carry_the_answer(tmp_path):
    from types import SimpleNamespace

    from analysis.sla import Judged
    from analysis.sla_report import plot_sla_metric, sla_frame, sla_html, sla_pngs

    cond = Condition("p99_ttft", "<=", 0.3)
    points = {}
    for value, est, verdict in ((2, 0.1, PASS), (4, 0.2, PASS), (8, 0.31, UNSURE), (16, 0.5, FAIL)):
        j = Judged(cond, est, est * 0.9, est * 1.1, 100, verdict)
        points[value] = PointVerdict(value, 3, 100, 0, (j,), verdict)
    search = SimpleNamespace(group=(cond,), points=points, step=SimpleNamespace(best_pass=4, first_fail=8))
    frame = sla_frame(search)
    assert list(frame["value"]) == [2, 4, 8, 16]
    assert frame["estimate"].tolist() == pytest.approx([100, 200, 310, 500])  # shown in ms
    assert frame.attrs["threshold"] == pytest.approx(300)
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    plot_sla_metric(ax, frame)
    assert any(line.get_linestyle() == "--" and line.get_ydata()[0] == pytest.approx(300) for line in ax.get_lines())
    pngs = sla_pngs([search], "parallel")
    assert list(pngs) == ["sla_search"] and pngs["sla_search"].startswith(b"\x89PNG")
    (line,) = answers([search], "parallel", 0.95, 1)
    assert line.startswith("max parallel 4 meets p99 TTFT ≤ 300 ms (95 %: p99 = 200 ms [180, 220])")
    block = sla_html([line], "table", pngs)
    assert block.index("max parallel 4") < block.index("<img")
