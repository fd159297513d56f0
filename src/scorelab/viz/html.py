"""Self-contained static HTML pages: pictures are embedded as base64 PNG, no network needed.

Used by ``scorelab report`` and the demo gallery. Everything is escaped; nothing is fetched.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; }
h1 { border-bottom: 2px solid #ccc; padding-bottom: .2em; }
h2 { margin-top: 1.6em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { display: inline-block; margin: .5em; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #ddd; }
pre { background: #f7f7f7; padding: .6em; overflow-x: auto; }
"""


def png_data_uri(source: Figure | bytes | str | Path, dpi: int = 100) -> str:
    """A ``data:image/png;base64,...`` URI from a figure, PNG bytes or a PNG file."""
    if isinstance(source, Figure):
        buf = io.BytesIO()
        source.savefig(buf, format="png", dpi=dpi)
        data = buf.getvalue()
    elif isinstance(source, bytes):
        data = source
    else:
        data = Path(source).read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def esc(text: object) -> str:
    """HTML-escaped text."""
    return html.escape(str(text))


def table(header: Sequence[str] | None, rows: Sequence[Sequence[object]], cls: str = "") -> str:
    """An HTML table (no header row for ``header=None``); numbers are right-aligned and floats
    shown to 4 significant digits."""

    def cell(v: object) -> str:
        if isinstance(v, float):
            return f'<td class="num">{v:.4g}</td>'
        if isinstance(v, int) and not isinstance(v, bool):
            return f'<td class="num">{v}</td>'
        return f"<td>{esc(v)}</td>"

    head = "" if header is None else "".join(f"<th>{esc(h)}</th>" for h in header)
    head = f"<thead><tr>{head}</tr></thead>" if head else ""
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    attr = f' class="{esc(cls)}"' if cls else ""
    return f"<table{attr}>{head}<tbody>{body}</tbody></table>"


def figure(source: Figure | bytes | str | Path, caption: str = "", alt: str = "") -> str:
    """An embedded picture with an optional caption."""
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{png_data_uri(source)}" alt="{esc(alt or caption)}">{cap}</figure>'


def page(title: str, body: str) -> str:
    """A complete HTML document around ``body`` (already HTML)."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{esc(title)}</h1>\n{body}\n</body></html>\n"
    )
