"""What `tinyhil lut show` and `lut diff` print, computed: a LUT summarised per
op type, and two LUTs compared op by op (e.g. two boards)."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from tinyhil.lut.table import Lut
from tinyhil.verdict import OK

META_COMPARED = ("board", "core", "counter", "tflm", "compiler")


def per_op_type(rows: pd.DataFrame) -> pd.DataFrame:
    """Per op type: rows, flagged rows, and min / median / max cycles of the good ones."""
    good = rows[rows["status"] == OK].groupby("op")["cycles"]
    return pd.DataFrame({
        "rows": rows.groupby("op").size(),
        "flagged": (rows["status"] != OK).groupby(rows["op"]).sum().astype(int),
        "min": good.min(), "median": good.median(), "max": good.max(),
    })


@dataclass(frozen=True)
class LutDiff:
    meta: dict[str, tuple[str, str]]  # metadata that differs: name -> (A, B)
    only_a: int
    only_b: int
    joined: pd.DataFrame  # ops in both: op, cycles (A), cycles_b, ratio B/A

    def by_op_type(self) -> pd.DataFrame:
        """min / median / max of the ratio B/A per op type."""
        return self.joined.groupby("op")["ratio"].agg(["size", "min", "median", "max"])

    def furthest(self, n: int) -> pd.DataFrame:
        """The n ops whose ratio is furthest from the median ratio."""
        off = (self.joined["ratio"] - self.joined["ratio"].median()).abs()
        return self.joined.assign(off=off).sort_values("off", ascending=False).head(n)


def diff_luts(a: Lut, b: Lut) -> LutDiff:
    meta = {name: (getattr(a.meta, name), getattr(b.meta, name)) for name in META_COMPARED
            if getattr(a.meta, name) != getattr(b.meta, name)}
    common = a.rows.index.intersection(b.rows.index)
    ratio = (b.rows.loc[common, "cycles"] / a.rows.loc[common, "cycles"]).rename("ratio")
    joined = a.rows.loc[common, ["op", "cycles"]].join(ratio)
    joined["cycles_b"] = b.rows.loc[common, "cycles"]
    return LutDiff(meta, len(a.rows.index.difference(common)), len(b.rows.index.difference(common)), joined)
