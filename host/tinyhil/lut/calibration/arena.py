"""Arena: the emulated bytes plus what the board's runtime adds."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tinyhil.lut.calibration.features import op_type


@dataclass(frozen=True)
class ArenaModel:
    """Board arena = emulated arena + offset[op type] (or x ratio[op type],
    kept only where it fits the reference rows better). The emulated board
    runs the same planner on the same tensors: what differs is what the
    board's runtime version allocates besides, a constant per model and op."""

    kind: str  # offset | ratio
    by_type: dict  # op type -> bytes (offset) or factor (ratio)
    default: float  # op types without reference rows: the median over the op types, each once
    grouped_max_error_pct: float  # leave one input shape out
    grouped_max_error_other_pct: float  # the kind not chosen, for the record

    @staticmethod
    def _fit_kind(kind: str, types, emulated, board) -> tuple[dict, float]:
        """Each op type's median, and for an op type no row has, the median
        of the types' values: a new op type is one more type, and the type
        measured most (hundreds of convolutions) must not stand for all."""
        value = board - emulated if kind == "offset" else board / emulated
        frame = pd.DataFrame({"type": types, "value": value})
        by_type = {t: float(g.median()) for t, g in frame.groupby("type")["value"]}
        return by_type, float(np.median(list(by_type.values())))

    @staticmethod
    def _apply(kind: str, by_type: dict, default: float, types, emulated) -> np.ndarray:
        values = np.array([by_type.get(t, default) for t in types], float)
        return emulated + values if kind == "offset" else emulated * values

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> ArenaModel | None:
        rows = frame[["op", "group", "emu_arena", "ref_arena"]].dropna()
        if rows.empty:
            return None
        types = rows["op"].map(op_type).to_numpy()
        emulated, board = rows["emu_arena"].to_numpy(float), rows["ref_arena"].to_numpy(float)
        groups = rows["group"].to_numpy()
        worst = {}
        for kind in ("offset", "ratio"):
            predicted = np.empty(len(rows))
            for group in dict.fromkeys(groups):
                held = groups == group
                if held.all():  # one shape: nothing to hold it out from
                    predicted[held] = cls._apply(kind, *cls._fit_kind(kind, types, emulated, board), types, emulated)
                    continue
                by_type, default = cls._fit_kind(kind, types[~held], emulated[~held], board[~held])
                predicted[held] = cls._apply(kind, by_type, default, types[held], emulated[held])
            worst[kind] = float(np.max(np.abs(predicted - board) / board) * 100)
        kind = "ratio" if worst["ratio"] < worst["offset"] else "offset"  # ties: the offset
        by_type, default = cls._fit_kind(kind, types, emulated, board)
        return cls(kind, by_type, default, worst[kind], worst["ratio" if kind == "offset" else "offset"])

    def predict(self, paths, emulated) -> np.ndarray:
        return self._apply(self.kind, self.by_type, self.default, [op_type(p) for p in paths],
                           np.asarray(emulated, float))

    @property
    def per_model_bytes(self) -> float:
        """The part of the offset every op type shares: counted once per model
        (a whole model's estimate adds the rest per op)."""
        return min([*self.by_type.values(), self.default]) if self.kind == "offset" else 0.0

    def to_dict(self) -> dict:
        return {"kind": self.kind, "by_type": {t: round(v, 4) for t, v in self.by_type.items()},
                "default": round(self.default, 4), "per_model_bytes": round(self.per_model_bytes, 1),
                "grouped_max_error_pct": round(self.grouped_max_error_pct, 4),
                "grouped_max_error_other_kind_pct": round(self.grouped_max_error_other_pct, 4)}
