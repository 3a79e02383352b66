"""What the report pages say, from known figures (tests/report_pages.py):
the deployment's figures with their errors, the architecture drawing, the
confusion matrices, the curves' marks, provenance, escaping; validation's
named points; the trend page's regression, JUnit durations and the console's
closing list; a history from before the new columns."""
import re
import xml.etree.ElementTree as ET

import matplotlib.pyplot as plt
import numpy as np
import pytest

from report_pages import CLASSES, DEVICE, HOST, LABELS, deployment_run, regress_history
from tinyhil.regress.history import LEGACY_COLUMNS, History, Row
from tinyhil.report.confusion import matrix
from tinyhil.report.deployment import figure_rows, write_report
from tinyhil.report.render import svg


@pytest.fixture(scope="module")
def deployment_page(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    d = deployment_run(run_dir, name="<script>alert(1)</script>")
    return d, write_report([d], run_dir / "report.html", "tinyhil deploy: test").read_text()


def test_every_figure_has_its_error(deployment_page):
    d, page = deployment_page
    rows = {r[0]: r for r in figure_rows(d)}
    assert rows["flash: int8 model (B)"][3] == f"{(9000 / 9500 - 1) * 100:+.2f} %"
    assert rows["peak memory: arena (B)"][3] == f"{(7000 / 7100 - 1) * 100:+.2f} %"
    assert rows["latency (ms)"][3] == f"{(37.5 / 37.0 - 1) * 100:+.2f} %"
    assert rows["flash: int8 model (B)"][5] == "yes" and rows["latency (ms)"][5] == "yes"
    assert "-5.26 %" in page  # the flash row's error on the page


def test_the_architecture_is_drawn_with_every_op_and_cell(deployment_page):
    d, page = deployment_page
    from tinyhil.nas.engines import SearchRun

    runtime = SearchRun.load(d.run_dir).architecture.runtime()
    drawing = re.search(r'<svg id="architecture-1" class="figure architecture".*?</svg>', page, re.S).group(0)
    root = ET.fromstring(drawing)
    layers = [g for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "layer"]
    assert len(layers) == len(runtime.ops)
    titles = [g.find("{http://www.w3.org/2000/svg}title").text for g in layers]
    assert all(op.key in title for op, title in zip(runtime.ops, titles))
    assert "Sensor-Fusion 0" in drawing and "classifier" in drawing and "Time-Reduce 0" in drawing
    # the device's op cycles shares add up to 100 % (the converter's QUANTIZE left out)
    shares = [float(s) for s in re.findall(r">([\d.]+) %</text>", drawing)]
    assert len(shares) == len(runtime.ops) and sum(shares) == pytest.approx(100, abs=0.1 * len(shares))


def test_confusion_matrices_count_the_windows():
    counts = matrix(LABELS, DEVICE, CLASSES)
    assert counts.sum() == len(LABELS) and np.trace(counts) == sum(a == b for a, b in zip(LABELS, DEVICE))
    assert counts[1, 2] == 1 and counts[3, 1] == 1
    # a window the device gave no output for counts in a column of its own
    assert matrix([0, 1], [0, -1], 2).tolist() == [[1, 0, 0], [0, 0, 1]]


def test_the_page_shows_both_confusion_matrices_and_the_difference(deployment_page):
    _, page = deployment_page
    correct = sum(a == b for a, b in zip(LABELS, DEVICE))
    assert f"device int8 vs labels: {correct}/{len(LABELS)} correct" in page
    differ = sum(h != d for h, d in zip(HOST, DEVICE))
    assert f"device vs host interpreter: {differ} window(s) differ" in page
    assert 'id="confusion-1"' in page


def test_curves_mark_the_chosen_epoch_and_warmup(deployment_page):
    _, page = deployment_page
    assert "chosen: epoch 9" in page and "warm-up (weights only, 4 epochs)" in page
    assert "latency target 40 ms" in page
    assert "argmax network of epoch 9 (dotted line). The first 4 epochs (shaded) train" in page


def test_provenance_and_escaping(deployment_page):
    _, page = deployment_page
    for value in ("abc123def456", "tflite-micro@7948b85", "GCC: 12.2.1", "0a297dc1f5df43bc",
                  "tinyhil pipeline --engine micronas", "2026-12-07T10:00:00+00:00"):
        assert value in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_svg_points_get_hover_titles():
    fig, ax = plt.subplots()
    ax.plot([1], [2], "o", gid="p-0")
    ax.plot([3], [4], "o", gid="p-1")
    text = svg(fig, {"p-0": "arch a <1>", "p-1": "arch b"})
    root = ET.fromstring(str(text))
    titles = {e.get("id"): e.find("{http://www.w3.org/2000/svg}title").text
              for e in root.iter() if e.get("id") in ("p-0", "p-1")}
    assert titles == {"p-0": "arch a <1>", "p-1": "arch b"}
    fig, _ = plt.subplots()
    with pytest.raises(ValueError, match="no artist with gid 'q'"):
        svg(fig, {"q": "x"})


def test_trend_page_marks_the_regression_by_commit(tmp_path):
    from tinyhil.report.trend import write_trend

    history = regress_history(tmp_path)
    page = write_trend(history.frame(), tmp_path / "trend.html", "nightly").read_text()
    failing = page[page.index('id="failing"'):page.index('id="runs"')]
    assert "deploy/run-1" in failing and "regression" in failing and "lut/" not in failing
    assert page.count("has-regression") == 1  # cycles on qemu-m4; the arena has none
    assert "deploy/run-1: +3.09 %" in page
    for commit in ("aaaa1111bbbb", "cccc2222dddd", "eeee3333ffff"):
        assert commit in page
    assert "tolerance (widest: ±0.5 %)" in page


def test_junit_times_and_the_console_list(tmp_path):
    from types import SimpleNamespace

    from tinyhil.regress.nightly import RegressResult, failing_rows
    from tinyhil.report.junit import write_junit

    frame = regress_history(tmp_path).frame()
    last = frame[frame["run_id"] == frame["run_id"].iloc[-1]].reset_index(drop=True)
    result = RegressResult(last["run_id"].iloc[0], False, last, 4, 0, None, tmp_path / "history.csv",
                           frozenset(last["case"] + "@" + last["environment"]))
    root = ET.parse(write_junit(result, SimpleNamespace(name="nightly"), tmp_path / "junit.xml")).getroot()
    times = {case.get("name"): float(case.get("time")) for case in root.iter("testcase")}
    assert set(times.values()) == {3.25}  # the third night's measuring seconds
    (suite,) = root.iter("testsuite")
    assert float(suite.get("time")) == pytest.approx(4 * 3.25)
    (line,) = failing_rows(result)
    assert line.startswith("regression: deploy/run-1 on qemu-m4 (m4-a) cycles: 943,000 -> 972,139")


def test_a_history_from_before_the_new_columns_is_read_and_extended(tmp_path):
    old = Row("r1", "t", "s", "qemu-m4", "m4-a", "lut/x", "lut", "cycles", 10.0, 10.0, 0.0, "pass", "multi\nline")
    (tmp_path / "history.csv").write_text(",".join(LEGACY_COLUMNS) + "\n"
                                          + 'r1,t,s,qemu-m4,m4-a,lut/x,lut,cycles,10.0,10.0,0.0,pass,"multi\nline"\n')
    history = History(tmp_path)
    assert history.frame()["seconds"].isna().all()
    with history.exclusive():
        history.append([Row(*[getattr(old, f) for f in LEGACY_COLUMNS][:12], "d", 2.5, "fw", "c0ffee")])
    frame = history.frame()
    assert list(frame["detail"]) == ["multi\nline", "d"] and list(frame.index) == [2, 4]
    assert frame["seconds"].iloc[1] == 2.5 and frame["commit"].iloc[1] == "c0ffee"
    assert frame["commit"].iloc[0] == "" and np.isnan(frame["seconds"].iloc[0])


def test_curve_marks_of_runs_from_before_they_were_recorded():
    from tinyhil.report.curves import CurveMarks

    took = CurveMarks.from_details({"note": "the final argmax network broke {}; took epoch 16's, the most "
                                            "accurate", "warmup_epochs": None, "lat_target_ms": 110}, 20)
    assert (took.chosen_epoch, took.warmup_epochs, took.lat_target_ms) == (16, 6, 110)
    assert CurveMarks.from_details({"note": ""}, 20).chosen_epoch == 20  # the last argmax network
    smallest = CurveMarks.from_details({"note": "... none of the second half met the targets: took the smallest"}, 9)
    assert smallest.chosen_epoch is None
    recorded = CurveMarks.from_details({"chosen_epoch": 7, "warmup": 2}, 9)
    assert (recorded.warmup_epochs, recorded.chosen_epoch) == (2, 7)


def test_the_prediction_on_a_physical_board_per_op_with_its_bound(tmp_path):
    from pathlib import Path

    from tinyhil.estimate.predict import PredictedOp, Prediction
    from tinyhil.nas.engines import SearchRun

    d = deployment_run(tmp_path)
    ops = SearchRun.load(tmp_path).architecture.runtime().ops
    prediction = Prediction("nucleo_f446re", Path("luts/nucleo_f446re/x.csv"), 180_000_000, "p95",
                            tuple(PredictedOp(i, op, 10_000.0 * (i + 1), 10_500.0 * (i + 1)) for i, op in enumerate(ops)),
                            invoke_cycles=2000.0, dispatch_cycles=100.0, calibrated=True, warnings=("a <rough> ratio",))
    page = write_report([d], tmp_path / "report.html", "t", prediction=prediction).read_text()
    section = page[page.index('id="prediction-1"'):page.index('id="architecture-1"')]
    bound = sum(10_500.0 * (i + 1) for i in range(len(ops))) + 2000 + 100 * len(ops)
    assert f"at p95 <b>{bound / 180e3:,.2f} ms</b>" in section and "from its calibrated LUT" in section
    assert section.count("<tr><td>") == len(ops) + 1  # a row per op and the overheads (the total: <th>)
    assert f"{10_500 * len(ops):,}" in section and "a &lt;rough&gt; ratio" in section
    assert "against the latency target 40.00 ms" in section and "under" in section
