"""The pieces of netfit's static report pages: escaping, embedded figures, tables and the page shell.

A page is self-contained: figures are PNG files embedded as base64, the CSS is inline, there is no
script and nothing is fetched, so it opens anywhere, offline, and can be mailed as one file. Every
string from a run or study folder goes through :func:`escape` before it enters a page.
"""

from __future__ import annotations

import base64
import html
from typing import Any

__all__ = ["escape", "figure", "table", "kv_table", "page"]


def escape(value: Any) -> str:
    """Text for the page: everything from a run folder is escaped, quotes included (it lands in attributes)."""
    return html.escape(str(value), quote=True)


def figure(name: str, png, alt: str) -> str:
    data = base64.b64encode(png.data).decode("ascii")
    return (f'<figure><img id="fig-{name}" class="plot" width="{png.width}" height="{png.height}" alt="{escape(alt)}" '
            f'src="data:image/png;base64,{data}"></figure>')


def table(header: list[str], rows: list[list[Any]], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td{" class=num" if j >= numeric_from else ""}>{cell}</td>'
                                    for j, cell in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def kv_table(items: list[tuple[str, Any]]) -> str:
    """A two-column table of names and values (values already escaped)."""
    return "<table class=kv>" + "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in items) + "</table>"


def page(title: str, sections: list[str]) -> str:
    """The whole page: ``sections`` are HTML already escaped; ``title`` is escaped here."""
    return (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
            f"<meta name=viewport content='width=device-width'><style>{_CSS}</style></head>"
            f"<body><main>{''.join(sections)}</main></body></html>\n")


_CSS = """
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;background:#f4f5f8}
main{max-width:1040px;margin:0 auto;padding:20px 24px 48px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:0 0 12px}h3{font-size:14px;margin:18px 0 8px}
section{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:16px 20px;margin:0 0 16px}
.sub{color:#5b6475;margin:0 0 12px}
.note{background:#fff6dd;border:1px solid #f0d98a;border-radius:6px;padding:8px 12px;margin:12px 0 0}
.tiles{display:flex;flex-wrap:wrap;gap:10px}
.tile{border:1px solid #dde1e8;border-radius:6px;padding:8px 14px;min-width:110px}
.tile b{display:block;font-size:20px}.tile span{color:#5b6475;font-size:12px}
.figs{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0}img.plot{display:block;max-width:100%;height:auto;border:1px solid #eef0f4}
table{border-collapse:collapse;margin:4px 0 8px;font-size:13px}
th,td{padding:3px 10px;border-bottom:1px solid #eef0f4;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}
table.kv th{color:#5b6475;font-weight:normal;padding-left:0}
.bar{display:inline-block;height:8px;background:#4c8bd6;border-radius:2px;margin-right:6px;vertical-align:middle}
pre{background:#f7f8fa;border:1px solid #eef0f4;border-radius:6px;padding:10px 12px;overflow:auto;font-size:12px}
code{font-size:12px}
"""
