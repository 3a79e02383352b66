"""JUnit XML of a regression run: a test suite per board environment, a test
case per benchmark; a regression is a <failure>, a wrong output an <error>,
a measurement the board gave up on <skipped> (the exit code still fails).

`junit.xsd` beside this file is the subset of the JUnit format that Jenkins,
GitLab and pytest use; the file is checked against it after writing."""
from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

from tinyhil.errors import TinyhilError
from tinyhil.files import atomic_write

SCHEMA = Path(__file__).with_name("junit.xsd")


class JunitError(TinyhilError):
    """A JUnit file that does not match the schema."""


def _g(value) -> str:
    return "" if value != value or value is None else f"{value:g}"


def case_seconds(case_rows) -> float:
    """The board's time measuring a case (its metrics' rows share it); 0 for a
    history from before it was recorded, or a case never measured."""
    seconds = case_rows["seconds"] if "seconds" in case_rows else []
    values = [float(v) for v in seconds if v == v and v is not None]
    return max(values, default=0.0)


def write_junit(result, suite, path: Path) -> Path:
    rows = result.rows
    root = ET.Element("testsuites", name=f"tinyhil regress {suite.name}")
    totals = dict(tests=0, failures=0, errors=0, skipped=0)
    for env, env_rows in rows.groupby("environment", sort=True):
        cases = list(env_rows.groupby("case", sort=True))
        counts = dict(tests=len(cases), failures=0, errors=0, skipped=0)
        testsuite = ET.SubElement(root, "testsuite", name=f"{suite.name}.{env}", hostname=socket.gethostname(),
                                  timestamp=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
                                  time="0")
        props = ET.SubElement(testsuite, "properties")
        ET.SubElement(props, "property", name="run_id", value=result.run_id)
        ET.SubElement(props, "property", name="boards",
                      value=",".join(sorted(set(env_rows["farm_board"]))))
        suite_seconds = 0.0
        for case_id, case_rows in cases:
            seconds = case_seconds(case_rows)
            suite_seconds += seconds
            testcase = ET.SubElement(testsuite, "testcase", classname=f"{suite.name}.{env}",
                                     name=case_id, time=f"{seconds:.3f}")
            lines = [f"{r.metric}: baseline {_g(r.baseline)} measured {_g(r.measured)} "
                     f"-> {r.verdict} ({r.detail}) on {r.farm_board}" for r in case_rows.itertuples()]
            verdicts = set(case_rows["verdict"])
            if "error" in verdicts:
                counts["errors"] += 1
                ET.SubElement(testcase, "error", message="; ".join(
                    case_rows.loc[case_rows["verdict"] == "error", "detail"]), type="wrong output")
            elif "regression" in verdicts:
                counts["failures"] += 1
                bad = case_rows[case_rows["verdict"] == "regression"]
                failure = ET.SubElement(testcase, "failure", type="regression", message="; ".join(
                    f"{r.metric} {_g(r.baseline)} -> {_g(r.measured)} ({r.detail})"
                    for r in bad.itertuples()))
                failure.text = "\n".join(lines)
            elif "skipped" in verdicts:
                counts["skipped"] += 1
                ET.SubElement(testcase, "skipped", message="; ".join(
                    case_rows.loc[case_rows["verdict"] == "skipped", "detail"]))
            ET.SubElement(testcase, "system-out").text = "\n".join(lines)
        testsuite.set("time", f"{suite_seconds:.3f}")
        for k, v in counts.items():
            testsuite.set(k, str(v))
            totals[k] += v
    for k, v in totals.items():
        root.set(k, str(v))
    ET.indent(root)
    atomic_write(path, ET.tostring(root, encoding="utf-8", xml_declaration=True))
    validate_junit(path)
    return path


def validate_junit(path: Path) -> None:
    import xmlschema

    schema = xmlschema.XMLSchema(str(SCHEMA))
    errors = list(schema.iter_errors(str(path)))
    if errors:
        raise JunitError(f"{path} is not valid JUnit XML: {errors[0].reason} at {errors[0].path}")
