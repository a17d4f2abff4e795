"""A small static HTML report: metrics tables and image grids, with images referenced by relative path."""

from __future__ import annotations

import html
import os
from pathlib import Path

from .fileio import atomic_path


def write_report(path: str | os.PathLike, title: str, sections: list[dict]) -> Path:
    """Write ``path`` (HTML). Each section: {"title", optional "text", "metrics": dict, "images": [(caption, file)]}.

    Image files are referenced relative to the report's folder, so the folder can be moved as a whole.
    """
    path = Path(path)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}"
        "figure{display:inline-block;margin:4px;text-align:center;font-size:12px}"
        "img{max-width:320px;image-rendering:pixelated;border:1px solid #ccc}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}</style>",
        f"</head><body><h1>{html.escape(title)}</h1>",
    ]
    for sec in sections:
        parts.append(f"<h2>{html.escape(sec['title'])}</h2>")
        if sec.get("text"):
            parts.append(f"<p>{html.escape(sec['text'])}</p>")
        if sec.get("metrics"):
            parts.append("<table>")
            for k, v in sec["metrics"].items():
                val = f"{v:.4g}" if isinstance(v, float) else html.escape(str(v))
                parts.append(f"<tr><th>{html.escape(str(k))}</th><td>{val}</td></tr>")
            parts.append("</table>")
        for caption, file in sec.get("images", []):
            rel = os.path.relpath(file, path.parent)
            parts.append(
                f"<figure><img src='{html.escape(rel)}'><figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(parts))
    return path
