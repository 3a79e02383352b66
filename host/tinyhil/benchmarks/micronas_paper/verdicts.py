"""The targets `bench micronas-paper --table2` is judged by, each printed
with what it compared:

- UCI-HAR's windows within 2 % of the published counts, per split;
- MicroNAS' int8 test accuracy and macro F1 (mean over seeds) at or above
  each Table 2 row's, every found network within its latency target by the
  predicted board latency at its bound and within its memory target by the
  arena the emulated board measured;
- MicroNAS at least as accurate as random search under the same targets;
- TinyTNAS within its README's constraints, at or above its 93.4 %.
A target nothing was run for is "not run", not passed.
"""
from __future__ import annotations

from dataclasses import dataclass

from tinyhil.benchmarks.micronas_paper.engines_table import TINYTNAS_README, EngineOutcome
from tinyhil.benchmarks.micronas_paper.paper_rows import TABLE2, BoardOutcome

WINDOWS_WITHIN_PCT = 2.0


@dataclass(frozen=True)
class Target:
    name: str
    ok: bool | None  # None: not run
    detail: str

    @property
    def mark(self) -> str:
        return {True: "met", False: "MISSED", None: "not run"}[self.ok]


def window_counts(splits) -> list[Target]:
    """The rebuilt windows per split (training = training + validation subjects) beside UCI-HAR's."""
    from tinyhil.nas.uci_har_build import PUBLISHED

    ours = {"train": len(splits.y_train) + len(splits.y_val), "test": len(splits.y_test)}
    out = []
    for split, count in ours.items():
        published = sum(PUBLISHED[split])
        diff = 100 * (count - published) / published
        out.append(Target(f"UCI-HAR {split} windows within {WINDOWS_WITHIN_PCT:g} % of the published",
                          abs(diff) <= WINDOWS_WITHIN_PCT, f"{count:,} against {published:,} ({diff:+.1f} %)"))
    return out


def _mean(values) -> float:
    return sum(values) / len(values)


def table2(outcomes: list[BoardOutcome]) -> list[Target]:
    out = []
    for row in TABLE2:
        mine = [o for o in outcomes if o.experiment == "table2" and o.row == row.name]
        micronas = [o for o in mine if o.method == "micronas"]
        random = [o for o in mine if o.method == "random"]
        label = f"{row.name} ({row.board}, {row.lat_target_ms:g} ms, {row.mem_target_bytes:,.0f} B)"
        if not micronas:
            out.append(Target(f"{label}: MicroNAS", None, "no seed finished"))
            continue
        seeds = f"{len(micronas)} seed{'s' if len(micronas) > 1 else ''}"
        for name, field, paper in (("int8 accuracy", "accuracy_int8", row.paper[1]),
                                   ("int8 macro F1", "f1_int8", row.paper[3])):
            mean = 100 * _mean([getattr(o, field) for o in micronas])
            out.append(Target(f"{label}: MicroNAS {name} at or above the paper's", mean >= paper,
                              f"{mean:.2f} % against {paper:.2f} % (mean of {seeds})"))
        lat = [o.within_latency for o in micronas]
        mem = [o.within_memory for o in micronas]
        judged = all(v is not None for v in lat + mem)
        out.append(Target(f"{label}: every MicroNAS network within both targets (latency: predicted at p95; "
                          "memory: measured arena)", all(lat + mem) if judged else None,
                          f"latency {sum(v is True for v in lat)}/{len(lat)}, memory {sum(v is True for v in mem)}/"
                          f"{len(mem)}" + ("" if judged else " (some not predicted or not measured)")))
        if random:
            ours, theirs = (100 * _mean([o.accuracy_int8 for o in rows]) for rows in (micronas, random))
            out.append(Target(f"{label}: MicroNAS at least as accurate as random search (int8)", ours >= theirs,
                              f"{ours:.2f} % against {theirs:.2f} % (means of {len(micronas)} and {len(random)} "
                              "seeds)"))
        else:
            out.append(Target(f"{label}: MicroNAS at least as accurate as random search", None, "random search not run"))
    fig8 = [o for o in outcomes if o.experiment == "fig8"]
    if fig8:
        lat = [o.within_latency for o in fig8]
        out.append(Target("Fig. 8: every network within its latency target (predicted at p95)",
                          all(v is True for v in lat), f"{sum(v is True for v in lat)}/{len(lat)}"))
    return out


def tinytnas(outcome: EngineOutcome | None) -> list[Target]:
    name = (f"TinyTNAS within its README's constraints (RAM 20 KB, flash 64 KB, 60K MACs), int8 test "
            f"accuracy on the device at or above its {100 * TINYTNAS_README['accuracy']:.1f} %")
    if outcome is None:
        return [Target(name, None, "not run")]
    c = outcome.under_targets
    within = bool(c.get("ram")) and bool(c.get("flash")) and bool(outcome.macs_within)
    accurate = outcome.accuracy_int8_device >= TINYTNAS_README["accuracy"]
    windows = ("" if outcome.device_windows == outcome.test_windows
               else f" on {outcome.device_windows:,} of the {outcome.test_windows:,} test windows")
    return [Target(name, within and accurate,
                   f"arena {outcome.arena_bytes:,} B, model {outcome.model_bytes:,} B, {outcome.est_macs:,} MACs; "
                   f"int8 accuracy {100 * outcome.accuracy_int8_device:.2f} %{windows}")]
