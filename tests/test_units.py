"""A value's unit must match its quantity: a latency in ms, a memory size in
bytes, a time budget in seconds; a bare number only where the CLI says so."""
import pytest
from typer.testing import CliRunner

from tinyhil.cli import app
from tinyhil.units import UnitError, parse_count, parse_duration_s, parse_latency_ms, parse_memory_bytes


@pytest.mark.parametrize("text, value", [("40ms", 40.0), ("40 ms", 40.0), ("0.5s", 500.0),
                                         ("250us", 0.25), ("1.5MS", 1.5)])
def test_latencies(text, value):
    assert parse_latency_ms(text, "--lat-target") == pytest.approx(value)


@pytest.mark.parametrize("text, value", [("32KB", 32768), ("32kib", 32768), ("100B", 100),
                                         ("1.5KB", 1536), ("2MB", 2 * 1024**2)])
def test_memory_sizes(text, value):
    assert parse_memory_bytes(text, "--mem-target") == value


def test_counts_and_durations():
    assert parse_count("60k", "--macs") == 60_000 and parse_count("60000", "--macs") == 60_000
    assert parse_count("1.5M", "--macs") == 1_500_000
    assert parse_duration_s("10m", "--time-budget") == 600 and parse_duration_s("90s", "-") == 90
    assert parse_duration_s("1h", "--budget") == 3600 and parse_duration_s("2min", "-") == 120


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
])
def test_wrong_units_are_refused_naming_option_and_units(parse, text, message):
    with pytest.raises(UnitError, match=message) as error:
        parse(text, "--opt")
    assert str(error.value).startswith(f"--opt {text!r}")


@pytest.mark.parametrize("args, message", [
    (["search", "micronas", "--data", "basic_motions", "--lat-target", "40m"],
     "--lat-target '40m': 'm' is a duration unit, not a latency unit"),
    (["search", "micronas", "--data", "basic_motions", "--lat-target", "32KB"],
     "--lat-target '32KB': 'KB' is a memory size unit"),
    (["search", "micronas", "--data", "basic_motions", "--mem-target", "40ms"],
     "--mem-target '40ms': 'ms' is a latency unit, not a memory size unit"),
    (["search", "tinytnas", "--data", "basic_motions", "--latency", "32KB"],
     "--latency '32KB': 'KB' is a memory size unit"),
    (["search", "tinytnas", "--data", "basic_motions", "--time-budget", "10KB"],
     "--time-budget '10KB': 'KB' is a memory size unit, not a duration unit"),
    (["search", "timenas", "--data", "basic_motions", "--ram", "128ms"],
     "--ram '128ms': 'ms' is a latency unit"),
    (["pipeline", "--engine", "micronas", "--data", "basic_motions", "--lat-target", "40m"],
     "--lat-target '40m': 'm' is a duration unit"),
    (["pipeline", "--engine", "tinytnas", "--data", "basic_motions", "--budget", "2"],
     "--budget '2': a bare number is refused"),
])
def test_cli_refuses_before_any_work(args, message):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output
