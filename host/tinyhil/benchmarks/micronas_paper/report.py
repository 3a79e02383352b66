"""What `bench micronas-paper --table2` shows: its tables as plain rows of
text (the console renders them, OUT/summary.md keeps them as markdown),
ours beside the paper's and the TinyTNAS README's."""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class TableData:
    title: str
    header: tuple[str, ...]
    rows: list[tuple[str, ...]]
    quoted: frozenset[int] = frozenset()  # rows that are the papers' own figures (shown dim)


def _ms(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def _pct(group, name: str) -> str:
    mean = group.mean(name)
    if math.isnan(mean):
        return "-"
    return f"{100 * mean:.2f}" + (f" ± {100 * group.spread(name):.2f}" if len(group.outcomes) > 1 else "")


def _num(group, name: str, digits: int = 2) -> str:
    mean = group.mean(name)
    return "-" if math.isnan(mean) else f"{mean:,.{digits}f}"


def _count(group, name: str) -> str:
    ok, judged = group.count(name)
    return "-" if not judged else f"{ok}/{judged}"


def table2(groups, test_windows: int) -> TableData:
    from tinyhil.benchmarks.micronas_paper.paper_rows import PAPER_BASELINES, TABLE2

    rows, quoted = [], set()
    for row in TABLE2:
        a, q, f, fq = (f"{v:.2f}" for v in row.paper)
        quoted.add(len(rows))
        rows.append((row.name, "paper", row.board, f"{row.lat_target_ms:g} / {row.mem_target_bytes:,.0f}", "", "",
                     "", f"{a} / {q}", f"{f} / {fq}", ""))
        for g in (g for g in groups if g.experiment == "table2" and g.row == row.name):
            rows.append(("", f"{g.method} ({len(g.outcomes)})", g.outcomes[0].twin, "",
                         f"{_num(g, 'predicted_ms')} ({_num(g, 'predicted_bound_ms')})",
                         _num(g, "measured_latency_ms"),
                         f"{_num(g, 'arena_bytes', 0)} / {_num(g, 'measured_arena_bytes', 0)}",
                         f"{_pct(g, 'accuracy')} / {_pct(g, 'accuracy_int8')}",
                         f"{_pct(g, 'f1')} / {_pct(g, 'f1_int8')}",
                         f"{_count(g, 'within_latency')} / {_count(g, 'within_memory')}"))
    for method, (a, q, f, fq) in PAPER_BASELINES.items():
        quoted.add(len(rows))
        rows.append(("", f"{method}, paper", "independent", "", "", "", "", f"{a:.2f} / {q:.2f}",
                     f"{f:.2f} / {fq:.2f}", ""))
    return TableData(
        f"Table 2 on UCI-HAR ({test_windows:,} test windows), mean ± spread over seeds (seeds in brackets); "
        "latency judged by the board latency predicted at p95, memory by the arena measured on the twin",
        ("row", "method", "board / measured on", "Lat_t (ms) / Mem_t (B)", "predicted ms (p95)", "twin ms",
         "arena est. / twin (B)", "accuracy % / int8", "F1 % / int8", "within lat. / mem."), rows, frozenset(quoted))


def fig8(groups) -> TableData:
    rows = [(g.board, g.outcomes[0].twin, f"{g.lat_target_ms:g}", f"{_num(g, 'predicted_ms')} "
             f"({_num(g, 'predicted_bound_ms')})", _num(g, "measured_latency_ms"),
             _num(g, "measured_arena_bytes", 0), f"{_pct(g, 'accuracy')} / {_pct(g, 'accuracy_int8')}",
             f"{_pct(g, 'f1')} / {_pct(g, 'f1_int8')}", _count(g, "within_latency"))
            for g in sorted((g for g in groups if g.experiment == "fig8"), key=lambda g: (g.board, g.lat_target_ms))]
    return TableData("Fig. 8 on UCI-HAR: MicroNAS under latency targets, memory loss off",
                     ("board", "measured on", "Lat_t (ms)", "predicted ms (p95)", "twin ms", "arena twin (B)",
                      "accuracy % / int8", "F1 % / int8", "within lat."), rows)


def tinytnas(e) -> TableData:
    from tinyhil.benchmarks.micronas_paper.engines_table import TINYTNAS_README as R

    windows = "" if e.device_windows == e.test_windows else f" ({e.device_windows:,} of {e.test_windows:,} windows)"
    latency = f"{e.measured_ms:.2f} ({e.board}, measured)"
    latency += (f", {e.predicted_ms:.2f} ({e.predicted_board}, p95 {e.predicted_bound_ms:.2f})"
                if e.predicted_ms is not None else "; no physical board's LUT prices its ops")
    rows = [("README", "", f"{100 * R['accuracy']:.1f}", f"{R['ram_kb']}", f"{R['flash_kb']}",
             f"{R['macs'] / 1e3:.1f}", ", ".join(f"{v:g} ({k})" for k, v in R["latency_ms"].items()),
             f"{R['search_minutes']} min"),
            ("tinyhil", e.description,
             f"{100 * e.accuracy:.1f} float, {100 * e.accuracy_int8_device:.1f} int8 on the device{windows}",
             f"{e.arena_bytes / 1024:.1f} (arena)", f"{e.model_bytes / 1024:.1f} (int8 model)",
             f"{e.est_macs / 1e3:.1f}", latency, f"{e.search_seconds / 60:.1f} min")]
    return TableData("TinyTNAS on UCI-HAR under its README's constraints: RAM 20 KB, flash 64 KB, 60K MACs, 10 min",
                     ("", "found", "accuracy (%)", "RAM (KB)", "flash (KB)", "MACs (K)", "latency (ms)", "search"),
                     rows, frozenset({0}))


def engines(outcomes) -> TableData:
    from tinyhil.benchmarks.micronas_paper.engines_table import ENGINE_TARGETS as T

    rows = []
    for e in outcomes:
        windows = "" if e.device_windows == e.test_windows else f" ({e.device_windows})"
        predicted = "-" if e.predicted_ms is None else f"{e.predicted_ms:.2f} ({e.predicted_bound_ms:.2f})"
        rows.append((e.engine, e.description, f"{e.search_seconds / 60:.1f} min", f"{e.accuracy:.3f} / {e.f1:.3f}",
                     f"{e.accuracy_int8_host:.3f}", f"{e.accuracy_int8_device:.3f}{windows}",
                     f"{e.f1_int8_device:.3f}", f"{e.est_latency_ms:.2f} / {predicted} / {e.measured_ms:.2f}",
                     f"{e.est_ram:,} / {e.arena_bytes:,}", f"{e.model_bytes:,}", "yes" if e.within else "NO"))
    return TableData(f"Three engines on UCI-HAR, qemu-m4 (the F446RE's twin): latency {T.latency_ms:g} ms, arena "
                     f"{T.ram_bytes:,.0f} B, flash {T.flash_bytes:,.0f} B",
                     ("engine", "found", "search", "accuracy / F1", "int8 acc. host", "int8 acc. device",
                      "int8 F1 device", "latency ms: est. / F446RE pred. (p95) / measured",
                      "arena est. / measured (B)", "flash (B)", "within"), rows)


def markdown(tables: list[TableData], lines: list[str]) -> str:
    out = []
    for t in tables:
        out += [f"**{t.title}**", "", "| " + " | ".join(t.header) + " |", "|" + "---|" * len(t.header)]
        out += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in t.rows]
        out.append("")
    return "\n".join(out + [f"- {line}" for line in lines]) + "\n"
