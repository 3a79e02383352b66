"""The found architecture drawn as SVG: one row per op in the order TFLite
runs them, parallel branches side by side, each box as wide as its output is
deep (channels), cells framed, and beside each op its share of the measured
latency and the arena alive while it runs. Every box has a hover title with
the op's LUT key and figures."""
from __future__ import annotations

import math
from html import escape

import markupsafe

from tinyhil.report.layers import Layer, share, short_name
from tinyhil.spaces.arch import MODEL_INPUT

ROW, BOX_H, LANE_W, CELL_W, BAR_W = 50, 36, 190, 118, 150
TOP = 76  # the header and the input's row
COLORS = {"conv2d": "#cfe0f7", "depthwise_conv2d": "#cdeeea", "add": "#fde3c8", "avg_pool2d": "#d8f0d2",
          "max_pool2d": "#d8f0d2", "global_avg_pool2d": "#d8f0d2", "dense": "#e6dcf5", "softmax": "#eeeeee",
          "reshape": "#eeeeee"}


def lanes(rows: list[Layer]) -> list[int]:
    """A column per op: an op continues the column of its first input unless
    another op already did (then: the lowest free column); a sum takes the
    lowest column of its inputs, and a column is free again once all readers
    of its last op are placed (and no op between a fork's source and the fork
    sits in the column the fork takes)."""
    readers: dict[int, int] = {}
    for r in rows:
        for s in set(r.inputs):
            readers[s] = readers.get(s, 0) + 1
    lane_of = {MODEL_INPUT: 0}
    continued: set[int] = set()
    busy = {0}
    out = []
    for r in rows:
        sources = list(dict.fromkeys(r.inputs))
        if len(sources) > 1:
            lane = min(lane_of[s] for s in sources)
        elif sources[0] not in continued:
            lane = lane_of[sources[0]]
        else:  # a fork: a column no op between its source and it uses, so the edge runs clear
            first = 0 if sources[0] == MODEL_INPUT else sources[0] + 1
            taken = busy | set(out[first:])
            lane = next(i for i in range(len(rows) + 1) if i not in taken)
        for s in sources:
            continued.add(s)
            readers[s] -= 1
            if not readers[s] and lane_of[s] != lane:
                busy.discard(lane_of[s])
        lane_of[r.position] = lane
        busy.add(lane)
        out.append(lane)
    return out


def _box_width(channels: int) -> float:
    return 96 + 14 * math.log2(max(channels, 1))


def _text(x, y, text, size=11, anchor="start", weight="normal", fill="#222") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'font-weight="{weight}" fill="{fill}">{escape(str(text))}</text>')


def _edge(source_xy, source: int, target_xy, target: int, lane_of: dict, rows: list[Layer]) -> str:
    """A fork leaves its column at once and runs down the new one; a merge runs
    down its own column and joins just above the sum; an edge that skips rows
    of its own column bows out to the left of them."""
    (sx, sy), (tx, ty) = source_xy, target_xy
    sy += BOX_H if source != MODEL_INPUT else 8
    first = 0 if source == MODEL_INPUT else source + 1
    between = [p for p in range(first, target) if lane_of[p] == lane_of[target]]
    if abs(sx - tx) < 1 and between:
        bow = sx - max(_box_width(rows[p].op.out_channels) for p in between) / 2 - 14
        path = f"M{sx:.1f},{sy:.1f} C{bow:.1f},{sy + 10:.1f} {bow:.1f},{ty - 10:.1f} {tx:.1f},{ty:.1f}"
    elif abs(sx - tx) < 1 or ty - sy <= ROW:
        mid = (sy + ty) / 2
        path = f"M{sx:.1f},{sy:.1f} C{sx:.1f},{mid:.1f} {tx:.1f},{mid:.1f} {tx:.1f},{ty:.1f}"
    elif lane_of[target] > lane_of[source]:  # a fork
        turn = sy + (ROW - BOX_H) / 2 + 4
        path = (f"M{sx:.1f},{sy:.1f} C{sx:.1f},{turn:.1f} {tx:.1f},{sy:.1f} {tx:.1f},{turn + 8:.1f} "
                f"L{tx:.1f},{ty:.1f}")
    else:  # a merge
        turn = ty - (ROW - BOX_H) / 2 - 4
        path = (f"M{sx:.1f},{sy:.1f} L{sx:.1f},{turn - 8:.1f} C{sx:.1f},{ty:.1f} {tx:.1f},{turn:.1f} "
                f"{tx:.1f},{ty:.1f}")
    return f'<path d="{path}" fill="none" stroke="#666" stroke-width="1.3" marker-end="url(#arrow)"/>'


def draw(rows: list[Layer], input_shape, counter: str = "cycles", element_id: str = "architecture"
         ) -> markupsafe.Markup:
    """The drawing (an <svg class="architecture">); rows from report.layers.layers()."""
    column = lanes(rows)
    n_lanes = max(column, default=0) + 1
    x0 = CELL_W + 10
    bars = x0 + n_lanes * LANE_W + 10
    width = bars + 2 * BAR_W + 130
    height = TOP + ROW * len(rows) + 30
    shares = share(rows)
    live_max = max((r.live_bytes for r in rows), default=1) or 1
    centre = {MODEL_INPUT: (x0 + LANE_W / 2, TOP - 20)}
    parts = [_text(x0, 14, "ops, in the order TFLite runs them", 11, weight="bold"),
             _text(x0, 27, "box width: output channels", 10, fill="#555"),
             _text(bars, 14, "share of measured latency", 11, weight="bold"),
             _text(bars + BAR_W + 35, 14, "arena alive (planned)", 11, weight="bold")]
    # cells: a frame around the rows of each run of equal labels
    start = 0
    for i in range(1, len(rows) + 1):
        if i == len(rows) or rows[i].cell != rows[start].cell:
            if rows[start].cell:
                y = TOP + start * ROW + 2
                parts.append(f'<rect class="cell" x="4" y="{y}" width="{bars - 10}" height="{(i - start) * ROW - 4}" '
                             f'rx="8" fill="#f7f7f2" stroke="#b9b9a8"/>')
                parts.append(_text(12, y + 16, rows[start].cell, 11, weight="bold", fill="#555"))
            start = i
    # the model's input
    ix, iy = centre[MODEL_INPUT]
    parts.append(f'<rect x="{ix - 60}" y="{iy - 14}" width="120" height="22" rx="11" fill="#fff" stroke="#888"/>')
    parts.append(_text(ix, iy + 1, "input " + "x".join(map(str, input_shape)), 10, "middle"))
    boxes = []
    for r, lane in zip(rows, column):
        cx, y = x0 + lane * LANE_W + LANE_W / 2, TOP + r.position * ROW + (ROW - BOX_H) / 2
        centre[r.position] = (cx, y)
        w = _box_width(r.op.out_channels)
        title = (f"#{r.position} {r.op.key}\n"
                 f"device {r.device_cycles:,.0f} {counter}" if r.device_cycles is not None else
                 f"#{r.position} {r.op.key}\ndevice: not paired")
        if r.lut_cycles is not None:
            title += f"\nLUT row {r.lut_cycles:,.0f}"
        title += (f"\noutput {'x'.join(map(str, r.op.output_shape))} ({r.op.output_bytes:,} B), "
                  f"weights {r.op.weights_bytes:,} B, MACs {r.op.macs:,}\narena alive {r.live_bytes:,} B")
        detail = "x".join(map(str, r.op.output_shape))
        boxes.append(
            f'<g class="layer" id="layer-{r.position}"><title>{escape(title)}</title>'
            f'<rect x="{cx - w / 2:.1f}" y="{y:.1f}" width="{w:.1f}" height="{BOX_H}" rx="5" '
            f'fill="{COLORS.get(r.op.op, "#eee")}" stroke="#555"/>'
            + _text(cx, y + 15, f"{r.position}: {short_name(r.op)}", 11, "middle", "bold")
            + _text(cx, y + 29, f"{r.op.out_channels} ch · {detail}", 9, "middle", fill="#444") + "</g>")
        s = shares[r.position]
        bar_y = y + 8
        if s is not None:
            parts.append(f'<rect x="{bars}" y="{bar_y}" width="{max(1.0, s / 100 * BAR_W):.1f}" height="18" '
                         f'fill="#4a78c2"/>')
            parts.append(_text(bars + max(1.0, s / 100 * BAR_W) + 4, bar_y + 13, f"{s:.1f} %", 10))
        else:
            parts.append(_text(bars, bar_y + 13, "-", 10))
        ax = bars + BAR_W + 35
        parts.append(f'<rect x="{ax}" y="{bar_y}" width="{r.live_bytes / live_max * BAR_W:.1f}" height="18" '
                     f'fill="#e0883a"/>')
        parts.append(_text(ax + r.live_bytes / live_max * BAR_W + 4, bar_y + 13, f"{r.live_bytes:,} B", 10))
    edges = []
    lane_of = dict(zip((r.position for r in rows), column)) | {MODEL_INPUT: 0}
    for r in rows:
        tx, ty = centre[r.position]
        for s in dict.fromkeys(r.inputs):
            edges.append(_edge(centre[s], s, (tx, ty), r.position, lane_of, rows))
    defs = ('<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" '
            'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#666"/></marker></defs>')
    svg = (f'<svg id="{escape(element_id)}" class="figure architecture" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} '
           f'{height:.0f}" style="max-width:{width:.0f}px" font-family="sans-serif" role="img" '
           f'aria-label="the found architecture">{defs}{"".join(parts)}{"".join(edges)}{"".join(boxes)}</svg>')
    return markupsafe.Markup(svg)
