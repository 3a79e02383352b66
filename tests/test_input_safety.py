"""Inputs are never executed: no pickle, no shell, YAML loaded safely.
A guard over the package's sources, so that a new module cannot slip one in."""
import re

from conftest import ROOT

FORBIDDEN = {
    r"\bpickle\.loads?\(": "pickle loading",
    r"allow_pickle\s*=\s*True": "numpy loading pickled objects",
    r"shell\s*=\s*True": "a shell",
    r"\byaml\.(load|unsafe_load|full_load)\(": "YAML loaded unsafely (use yaml.safe_load)",
    r"\beval\(|\bexec\(": "eval/exec",
}


def test_sources_do_not_execute_their_inputs():
    found = []
    for path in sorted((ROOT / "host").rglob("*.py")):
        text = path.read_text()
        for pattern, what in FORBIDDEN.items():
            for match in re.finditer(pattern, text):
                line = text.count("\n", 0, match.start()) + 1
                found.append(f"{path.relative_to(ROOT)}:{line}: {what}")
    assert not found, "\n".join(found)


def test_the_guard_catches_what_it_looks_for():
    samples = ["pickle.load(f)", "np.load(p, allow_pickle=True)", "run(cmd, shell=True)",
               "yaml.load(text)", "eval(expr)"]
    for sample in samples:
        assert any(re.search(p, sample) for p in FORBIDDEN), sample
    assert not any(re.search(p, "yaml.safe_load(text)") for p in FORBIDDEN)
