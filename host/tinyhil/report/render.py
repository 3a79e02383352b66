"""What every report page shares: the Jinja2 templates beside this file (one
base page and one style sheet, autoescaped), and figures turned into what a
page embeds: inline SVG, whose points may carry hover titles."""
from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

import jinja2
import markupsafe
import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

TEMPLATES = Path(__file__).with_name("templates")
SVG_NS = "http://www.w3.org/2000/svg"
ET.register_namespace("", SVG_NS)
ET.register_namespace("xlink", "http://www.w3.org/1999/xlink")

_env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                          undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def number(value, digits: int = 0, unit: str = "") -> str:
    """1,234.5 style; '-' for a missing figure."""
    if value is None or value != value:
        return "-"
    return f"{value:,.{digits}f}{unit}"


def signed_pct(value) -> str:
    return "-" if value is None or value != value else f"{value:+.2f} %"


_env.filters["number"] = number
_env.filters["pct"] = signed_pct


def render(template: str, **context) -> str:
    """A page from templates/<template>; every value is escaped unless it is
    markupsafe.Markup (the figures made here)."""
    context.setdefault("generated", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    return _env.get_template(template).render(**context)


def svg(fig, titles: dict[str, str] | None = None) -> markupsafe.Markup:
    """The figure as inline SVG (closed afterwards). `titles`: gid -> hover
    title, for artists given that gid (`gid=` or `set_gid`): the browser shows
    the title when the pointer rests on what the artist drew (one point each,
    so that every point of a scatter can be named)."""
    buffer = io.StringIO()
    with plt.rc_context({"svg.fonttype": "none"}):  # text stays text: selectable, searchable
        fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    root = ET.fromstring(buffer.getvalue())
    by_id = {e.get("id"): e for e in root.iter() if e.get("id")}
    for gid, label in (titles or {}).items():
        if gid not in by_id:
            raise ValueError(f"no artist with gid {gid!r} in the figure (not finite, or not drawn?)")
        title = ET.Element(f"{{{SVG_NS}}}title")
        title.text = label
        by_id[gid].insert(0, title)
    text = ET.tostring(root, encoding="unicode")
    # width/height in pt: the page scales the drawing, at most to its own size
    text = re.sub(r'<svg([^>]*?) width="([\d.]+)pt" height="([\d.]+)pt"',
                  lambda m: f'<svg{m.group(1)} class="figure" style="max-width:{float(m.group(2)) * 4 / 3:.0f}px"',
                  text, count=1)
    return markupsafe.Markup(text)

