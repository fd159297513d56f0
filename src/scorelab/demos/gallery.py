"""The gallery: one self-contained ``index.html`` with every demo's pictures embedded (PNG and
animated GIF as base64 data URIs), its explanation and its measured numbers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from scorelab.demos._common import DemoResult, data_uri
from scorelab.viz import html

EXTRA_STYLE = """
nav ol { columns: 2; }
p.claim { background: #f3f8f3; border-left: 4px solid #4a4; padding: .4em .7em; }
section { border-top: 1px solid #ddd; margin-top: 2em; }
"""


def picture(path: Path, caption: str = "") -> str:
    """An embedded PNG or GIF with a caption (``viz.html.figure`` handles PNG only)."""
    cap = f"<figcaption>{html.esc(caption)}</figcaption>" if caption else ""
    return (
        f'<figure><img src="{data_uri(path)}" alt="{html.esc(caption or path.name)}">{cap}</figure>'
    )


def section(result: DemoResult, summary: str, paragraph: str) -> str:
    """One demo's section: title, explanation, the measured claim, its table, its pictures."""
    parts = [
        f'<section id="{html.esc(result.name)}" class="demo">',
        f"<h2>{html.esc(result.name)}: {html.esc(summary)}</h2>",
        f"<p>{html.esc(paragraph)}</p>",
        f'<p class="claim"><b>Measured:</b> {html.esc(result.claim)}</p>',
    ]
    if result.table is not None:
        parts.append(html.table(*result.table))
    parts += [picture(p, p.name) for p in result.pictures]
    parts.append(
        f"<p><small>Ran in {result.seconds:.1f} s: <code>scorelab demo {html.esc(result.name)}"
        "</code></small></p></section>"
    )
    return "\n".join(parts)


def write_gallery(results: Sequence[DemoResult], out: Path, title: str = "scorelab demos") -> Path:
    """Write ``out/index.html``: a contents list, then one section per result."""
    from scorelab.demos import DEMOS

    total = sum(r.seconds for r in results)
    toc = "".join(
        f'<li><a href="#{html.esc(r.name)}">{html.esc(r.name)}</a>: '
        f"{html.esc(DEMOS[r.name].summary)}</li>"
        for r in results
    )
    intro = (
        "<p>Each demonstration runs with one command, <code>scorelab demo NAME</code>, and "
        "measures the claim it pictures; the test suite asserts every claim on these numbers. "
        f"All {len(results)} ran in {total:.0f} s.</p>"
    )
    body = [f"<style>{EXTRA_STYLE}</style>", intro, f"<nav><ol>{toc}</ol></nav>"]
    body += [section(r, DEMOS[r.name].summary, DEMOS[r.name].paragraph) for r in results]
    path = Path(out) / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html.page(title, "\n".join(body)))
    return path
