"""A value's unit must match its quantity: a latency in ms, a memory size in
bytes, a time budget in seconds; a bare number only where the CLI says so."""
import pytest
from typer.testing import CliRunner

from tinyhil.cli import app
from tinyhil.units import UnitError, parse_count, parse_duration_s, parse_latency_ms, parse_memory_bytes


@pytest.mark.parametrize("text, value", [("40ms", 40.0), ("40 ms", 40.0), ("0.5s", 500.0),
                                         ("250us", 0.25), ("1.5MS", 1.5)])
def test_latencies(text, value):
    assert parse_latency_ms(text, "--latency") == pytest.approx(value)


@pytest.mark.parametrize("text, value", [("32KB", 32768), ("32kib", 32768), ("100B", 100),
                                         ("1.5KB", 1536), ("2MB", 2 * 1024**2)])
def test_memory_sizes(text, value):
    assert parse_memory_bytes(text, "--memory") == value


def test_counts_and_durations():
    assert parse_count("60k", "--macs") == 60_000 and parse_count("60000", "--macs") == 60_000
    assert parse_count("1.5M", "--macs") == 1_500_000
    assert parse_duration_s("10m", "--time-budget") == 600 and parse_duration_s("90s", "-") == 90
    assert parse_duration_s("1h", "--time-budget") == 3600 and parse_duration_s("2min", "-") == 120
    assert parse_duration_s("0s", "--wait", allow_zero=True) == 0


@pytest.mark.parametrize("parse, text, message", [
    # the three: a unit of another quantity was read as this one's
    (parse_latency_ms, "40m", r"--opt '40m': 'm' is a duration unit, not a latency unit; "
                              r"accepted units: us, ms, s"),
    (parse_latency_ms, "32KB", r"'KB' is a memory size unit, not a latency unit"),
    (parse_memory_bytes, "40ms", r"'ms' is a latency unit, not a memory size unit; "
                                 r"accepted units: B, KB, KiB, MB, MiB"),
    (parse_count, "60KB", r"'KB' is a memory size unit, not a count unit"),
    (parse_duration_s, "10ms", r"'ms' is a latency unit, not a duration unit"),
    (parse_duration_s, "10KB", r"'KB' is a memory size unit, not a duration unit"),
    (parse_latency_ms, "40xs", r"'xs' is not a latency unit"),
    # bare numbers: refused where the unit is not obvious
    (parse_latency_ms, "40", r"a bare number is refused, the latency needs its unit \(us, ms, s\)"),
    (parse_memory_bytes, "32768", r"a bare number is refused, the memory size needs its unit"),
    (parse_duration_s, "45", r"a bare number is refused, the duration needs its unit"),
    # not a number, or not a target
    (parse_latency_ms, "fast", r"not a latency; give a positive number with a unit"),
    (parse_latency_ms, "-5ms", r"not a latency"),
    (parse_latency_ms, "inf ms", r"not a latency"),
    (parse_latency_ms, "0ms", r"must be more than 0"),
    (parse_memory_bytes, "0.5B", r"0.5 is not a whole number of bytes"),
    (parse_duration_s, "0s", r"must be more than 0"),
])
def test_wrong_units_are_refused_naming_option_and_units(parse, text, message):
    with pytest.raises(UnitError, match=message) as error:
        parse(text, "--opt")
    assert str(error.value).startswith(f"--opt {text!r}")


@pytest.mark.parametrize("args, message", [
    (["search", "micronas", "--data", "basic_motions", "--latency", "40m"],
     "--latency '40m': 'm' is a duration unit, not a latency unit"),
    (["search", "micronas", "--data", "basic_motions", "--latency", "32KB"],
     "--latency '32KB': 'KB' is a memory size unit"),
    (["search", "micronas", "--data", "basic_motions", "--memory", "40ms"],
     "--memory '40ms': 'ms' is a latency unit, not a memory size unit"),
    (["search", "tinytnas", "--data", "basic_motions", "--latency", "32KB"],
     "--latency '32KB': 'KB' is a memory size unit"),
    (["search", "tinytnas", "--data", "basic_motions", "--time-budget", "10KB"],
     "--time-budget '10KB': 'KB' is a memory size unit, not a duration unit"),
    (["search", "timenas", "--data", "basic_motions", "--memory", "128ms"],
     "--memory '128ms': 'ms' is a latency unit"),
    (["pipeline", "--engine", "micronas", "--data", "basic_motions", "--latency", "40m"],
     "--latency '40m': 'm' is a duration unit"),
    (["pipeline", "--engine", "tinytnas", "--data", "basic_motions", "--time-budget", "2"],
     "--time-budget '2': a bare number is refused"),
    # one rule on every command: a memory size needs its unit (Tiny-TimeNAS's kB is no default)
    (["search", "timenas", "--data", "basic_motions", "--memory", "128"],
     "--memory '128': a bare number is refused, the memory size needs its unit"),
    (["search", "tinytnas", "--data", "basic_motions", "--flash", "64"],
     "--flash '64': a bare number is refused"),
    (["pipeline", "--engine", "timenas", "--data", "basic_motions", "--flash", "256"],
     "--flash '256': a bare number is refused"),
    # durations too: budgets, timeouts, waits
    (["run", "model.tflite", "--timeout", "30"], "--timeout '30': a bare number is refused, the duration"),
    (["regress", "--timeout", "5ms"], "--timeout '5ms': 'ms' is a latency unit, not a duration unit"),
    (["worker", "--scheduler", "tcp://127.0.0.1:1", "--boards", "qemu-m4=1", "--wait", "10"],
     "--wait '10': a bare number is refused"),
])
def test_cli_refuses_before_any_work(args, message):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("old, new, args", [
    ("--lat-target", "--latency", ["search", "micronas", "--data", "basic_motions", "--lat-target", "40ms"]),
    ("--mem-target", "--memory", ["search", "micronas", "--data", "basic_motions", "--mem-target=32KB"]),
    ("--ram", "--memory", ["search", "tinytnas", "--data", "basic_motions", "--ram", "20KB"]),
    ("--n-archs", "--candidates", ["search", "timenas", "--data", "basic_motions", "--n-archs", "10"]),
    ("--flash-target", "--flash", ["pipeline", "--engine", "micronas", "--data", "x", "--flash-target", "64KB"]),
    ("--macs-target", "--macs", ["pipeline", "--engine", "tinytnas", "--data", "x", "--macs-target", "60k"]),
    ("--budget", "--time-budget", ["pipeline", "--engine", "tinytnas", "--data", "x", "--budget", "2m"]),
    ("--budget", "--time-budget", ["bench", "engines", "--budget", "60s"]),
    ("--mem-target", "--memory", ["bench", "micronas-sweep", "--mem-target", "64KB"]),
    ("--repeat", "--repeats", ["run", "model.tflite", "--repeat", "5"]),
    ("--window", "--test-window", ["run", "model.tflite", "--window", "3", "--data", "uci_har"]),
    ("--window", "--test-window", ["deploy", "runs/x", "--window", "3"]),
    ("--report", "--out", ["validate", "--space", "micronas", "--input", "128x9", "--report", "out"]),
    ("--out", "--image", ["build", "model.tflite", "--board", "qemu-m4", "--out", "image.elf"]),
    ("--out", "--lut", ["calibrate", "--emulated", "a.csv", "--reference", "b.csv", "--board", "x", "--out", "c.csv"]),
    ("--boards", "--inventory", ["regress", "--boards", "boards/lab.yaml"]),
])
def test_old_spellings_fail_naming_the_new_one(old, new, args):
    """Each old spelling of issue 31's vocabulary fails before anything runs, naming its successor."""
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    text = " ".join(result.output.split())
    assert result.exit_code == 2, text
    assert f"{old} is now {new}" in text, text
    assert "Traceback" not in text


def test_a_new_spelling_that_was_an_old_one_elsewhere_is_taken():
    """--out is validate's directory now and build's old name: on pipeline it is the run directory."""
    result = CliRunner().invoke(app, ["pipeline", "--engine", "nope", "--data", "x", "--out", "r"])
    assert result.exit_code == 2 and "--engine must be one of" in result.output
