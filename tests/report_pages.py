"""Report pages made from known figures, without a board or training: a
MicroNAS deployment's run directory (run.json, predictions.csv, curves.csv),
a validation result and a regression history with one injected regression.
tests/test_reports.py checks what the pages say; tests/test_report_browser.py
opens them in headless Chromium."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from tinyhil.deploy.deployment import Deployment, LayerRow
from tinyhil.deploy.qat import Scores
from tinyhil.nas.constraints import Profile
from tinyhil.nas.engines import DataSpec, SearchRun, Targets
from tinyhil.provenance import Provenance
from tinyhil.regress.history import History, Row
from tinyhil.spaces import make_space
from tinyhil.spaces.micronas import sample_architecture

CLASSES = 4
# label, host, device per test window: device = host except windows 3 and 7
LABELS = [0, 0, 1, 1, 2, 2, 3, 3, 0, 1, 2, 3]
HOST = [0, 1, 1, 1, 2, 0, 3, 3, 0, 1, 2, 3]
DEVICE = [0, 1, 1, 2, 2, 0, 3, 1, 0, 1, 2, 3]
DEPLOY_COMMITS = ("aaaa1111bbbb", "cccc2222dddd", "eeee3333ffff")


def branched_architecture():
    """A MicroNAS network with at least one Sensor-Fusion cell of two branches."""
    space = make_space("micronas", 100, 6, CLASSES)
    for seed in range(200):
        arch = sample_architecture(space, np.random.default_rng(seed))
        if sum(n.op.op == "add" for n in arch.nodes) >= 2:
            return arch
    raise AssertionError("no branched network in 200 samples")


def deployment_run(run_dir: Path, name: str = "basic_motions") -> Deployment:
    arch = branched_architecture()
    runtime = arch.runtime()
    SearchRun("micronas", "qemu-m4", DataSpec(name), CLASSES, (100, 6), arch,
              Targets(latency_ms=40, ram_bytes=32768), Profile(7000, 9000, arch.macs, 37.5), "lut.csv",
              {"chosen_epoch": 9, "warmup": 4, "lat_target_ms": 40, "mem_target_bytes": 32768,
               "note": "the final argmax network broke {'latency_ms': 41.2}; took epoch 9's, the most "
                       "accurate of the second half within the targets"}).write(run_dir)
    pd.DataFrame({"label": LABELS, "host_int8": HOST, "device_int8": DEVICE,
                  "outputs_equal": [h == d for h, d in zip(HOST, DEVICE)], "device_output": ""}
                 ).to_csv(run_dir / "predictions.csv", index_label="window")
    with open(run_dir / "curves.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "loss", "train_accuracy", "val_accuracy", "latency_ms", "memory_bytes", "tau"])
        for e in range(1, 13):
            writer.writerow([e, "nan" if e <= 4 else 2 / e, 0.3 + e / 30, 0.25 + e / 25, 30 + e, 6000 + 10 * e, 1.0])
    # the device ran a QUANTIZE the converter added, then the architecture's ops
    layers = [LayerRow(0, "QUANTIZE", 500.0)] + [
        LayerRow(i + 1, op.op.upper(), 1000.0 * (len(runtime.ops) - i), op.key, 1010.0 * (len(runtime.ops) - i))
        for i, op in enumerate(runtime.ops)]
    scores = {"float": Scores(0.75, 0.7), "qat": Scores(0.75, 0.7),
              "int8_host": Scores.of(np.array(HOST), np.array(LABELS), CLASSES),
              "int8_device": Scores.of(np.array(DEVICE), np.array(LABELS), CLASSES)}
    return Deployment(
        run_dir=str(run_dir), engine="micronas", board="qemu-m4", data=name, architecture_id=arch.id,
        targets=Targets(latency_ms=40, ram_bytes=32768, flash_bytes=16000), estimate=Profile(7000, 9000, arch.macs, 37.5),
        estimated_cycles=37.5 * 25e3, measured_cycles=(37.0 * 25e3,) * 3, clock_hz=25_000_000,
        counter="qemu-icount", arena_used=7100, model_bytes=9500, image_flash_bytes=88000, image_ram_bytes=60000,
        scores=scores, test_windows=len(LABELS), outputs_equal=10, max_output_steps=3, predictions_equal=10,
        layers=tuple(layers), warnings=(), seconds={"train": 1.0, "build": 2.0, "device": 3.0},
        provenance=Provenance("0.1.0", "abc123def456", "tinyhil pipeline --engine micronas", "2026-12-07T10:00:00+00:00",
                              "tflite-micro@7948b85", "GCC: 12.2.1", "0a297dc1f5df43bc", "8a1291f8b8263a86"))


def regress_history(out: Path, injected: float = 1.0309) -> History:
    """Three nights of four cases on qemu-m4; the third measures the deployed
    model `injected` times its baseline (+3.09 %: a regression at 0.5 %)."""
    history = History(out)
    cases = {"lut/conv2d/25x3x16": 120000.0, "lut/add/25x3x16": 9000.0, "model/tiny.tflite": 51000.0,
             "deploy/run-1": 943000.0}
    rows = []
    for night, commit in enumerate(DEPLOY_COMMITS):
        run = f"2026120{night + 1}T010000000000Z"
        for case, cycles in cases.items():
            kind = case.split("/")[0]
            measured = cycles * (injected if night == 2 and kind == "deploy" else 1.0)
            tol = 0.005 if kind == "deploy" else 0.0
            verdict = "regression" if measured > cycles * (1 + tol) else "pass"
            detail = f"{(measured / cycles - 1) * 100:+.3f} % vs baseline (tolerance {tol * 100:g} %)"
            rows += [Row(run, "t", "nightly", "qemu-m4", "m4-a", case, kind, "cycles", cycles, measured, tol,
                         verdict, detail, 1.25 + night, "0a297dc1f5df43bc", commit),
                     Row(run, "t", "nightly", "qemu-m4", "m4-a", case, kind, "arena_bytes", 1000.0, 1000.0, 0.0,
                         "pass", "+0 bytes", 1.25 + night, "0a297dc1f5df43bc", commit)]
    with history.exclusive():
        history.append(rows)
    return history


def validation_result(out: Path):
    """20 architectures from 0.5 to 60 ms: the LUT within 0.1 %, the MACs proxy within 55 %."""
    from tinyhil.measure.runner import Timing
    from tinyhil.validate import Metrics, ValidationResult

    rng = np.random.default_rng(0)
    measured = np.geomspace(0.5, 60, 20)
    clock = 25e6
    table = pd.DataFrame({
        "arch_id": [f"{i:012x}" for i in rng.integers(0, 2**48, 20)], "space": "micronas",
        "n_ops": rng.integers(8, 20, 20), "macs": (measured * 4e4).astype(int),
        "est_lut_cycles": measured * clock / 1e3 * (1 + rng.normal(0, 0.0005, 20)),
        "est_proxy_cycles": measured * clock / 1e3 * (1 + rng.uniform(-0.55, 0.55, 20)),
        "appendix_a_bytes": (measured * 300).astype(int), "est_arena_bytes": (measured * 500 + 2000).astype(int),
        "status": ["ok"] * 19 + ["error: no reply"], "weights_bytes": 1000, "model_bytes": 9000,
        "measured_cycles": measured * clock / 1e3, "arena_used": (measured * 500 + 2010).astype(int),
        "choices": "{}"})
    for column in ("est_lut_cycles", "est_proxy_cycles", "measured_cycles"):
        table[column.replace("cycles", "ms")] = table[column] / clock * 1e3
    for name, column in (("lut", "est_lut_cycles"), ("proxy", "est_proxy_cycles")):
        table[f"err_{name}_pct"] = (table[column] / table["measured_cycles"] - 1) * 100
    table["err_arena_pct"] = (table["est_arena_bytes"] / table["arena_used"] - 1) * 100
    good = table.iloc[:19]
    per_op = pd.DataFrame({"op": ["conv2d", "add"], "lut_cycles": [1.0, 1.0], "device_cycles": [1.0, 1.0],
                           "error_pct": [0.02, -0.1]})
    return ValidationResult(table, per_op, Metrics.of(good["est_lut_cycles"].to_numpy(),
                                                       good["measured_cycles"].to_numpy(), int(clock)),
                            Metrics.of(good["est_proxy_cycles"].to_numpy(), good["measured_cycles"].to_numpy(),
                                       int(clock)), 0.5, 0.54, out / "validation.csv", out / "validation.html",
                            Timing())
