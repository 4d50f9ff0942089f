"""Writers for report tables: Markdown, CSV, LaTeX, JSON, and one ``index.html``.

A :class:`Table` is a name (the file stem), a title, a caption and its rows (dicts
with the same keys). Writers keep the numbers exact in CSV and JSON and round
them for reading (3 decimals; p-values in 4 significant digits) in Markdown,
LaTeX and HTML.

>>> t = Table("demo", "Demo", [{"model": "gpt-4", "mean": 0.123456, "n": 3}])
>>> print(to_markdown(t))
| model | mean | n |
| --- | --- | --- |
| gpt-4 | 0.123 | 3 |
>>> print(to_csv(t), end="")
model,mean,n
gpt-4,0.123456,3
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import html
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

FORMATS = ("md", "csv", "tex", "json")
# LaTeX tables longer than this become a longtable (needs \\usepackage{longtable, booktabs}).
LONGTABLE_ROWS = 40
# Columns shown with more precision than 3 decimals (small p-values matter).
_P_VALUE_COLUMNS = frozenset({"p_value"})
_TEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    # Symbols the captions use, so the tables compile without a Unicode engine.
    "τ": r"$\tau$",
    "×": r"$\times$",
    "−": r"$-$",
    "–": "--",
    "½": r"$\frac{1}{2}$",
}


@dataclasses.dataclass
class Table:
    """One report table: ``name`` is the file stem, ``rows`` dicts with the same keys."""

    name: str
    title: str
    rows: list[dict[str, Any]]
    caption: str = ""

    @property
    def columns(self) -> list[str]:
        columns: dict[str, None] = {}
        for row in self.rows:
            columns.update(dict.fromkeys(row))
        return list(columns)


def format_cell(value: Any, column: str = "") -> str:
    """A value as a reader sees it.

    >>> format_cell(0.123456), format_cell(0.000012345, "p_value"), format_cell(None), format_cell(7)
    ('0.123', '1.234e-05', '', '7')
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if column in _P_VALUE_COLUMNS:
            return f"{value:.4g}"
        return f"{value:.3f}"
    return str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _jsonable(value.item())
    return value


def to_markdown(table: Table) -> str:
    columns = table.columns
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    for row in table.rows:
        cells = [format_cell(_jsonable(row.get(c)), c).replace("|", "\\|").replace("\n", " ") for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_csv(table: Table) -> str:
    buffer = io.StringIO()
    columns = table.columns
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in table.rows:
        writer.writerow({c: _jsonable(row.get(c)) for c in columns})
    return buffer.getvalue()


def _tex_escape(text: str) -> str:
    return "".join(_TEX_SPECIALS.get(char, char) for char in text)


def to_latex(table: Table) -> str:
    """A ``booktabs`` table; tables longer than ``LONGTABLE_ROWS`` rows are a ``longtable`` that breaks across pages."""
    columns = table.columns
    align = "".join("r" if _numeric_column(table, c) else "l" for c in columns)
    header = " & ".join(_tex_escape(c) for c in columns) + " \\\\"
    body = [" & ".join(_tex_escape(format_cell(_jsonable(row.get(c)), c)) for c in columns) + " \\\\" for row in table.rows]
    caption = _tex_escape(table.title + (". " + table.caption if table.caption else ""))
    label = f"\\label{{tab:{table.name}}}"
    if len(table.rows) > LONGTABLE_ROWS:
        lines = [f"\\begin{{longtable}}{{{align}}}", f"\\caption{{{caption}}}{label} \\\\",
                 "\\toprule", header, "\\midrule", "\\endfirsthead",
                 "\\toprule", header, "\\midrule", "\\endhead", *body, "\\bottomrule", "\\end{longtable}"]
    else:
        lines = ["\\begin{table}[t]", "\\centering", "\\small", f"\\begin{{tabular}}{{{align}}}",
                 "\\toprule", header, "\\midrule", *body, "\\bottomrule", "\\end{tabular}",
                 f"\\caption{{{caption}}}{label}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def _numeric_column(table: Table, column: str) -> bool:
    values = [row.get(column) for row in table.rows if row.get(column) is not None]
    return bool(values) and all(isinstance(_jsonable(v), (int, float)) and not isinstance(v, bool) for v in values)


def to_json(table: Table) -> str:
    payload = {
        "name": table.name,
        "title": table.title,
        "caption": table.caption,
        "rows": [{k: _jsonable(v) for k, v in row.items()} for row in table.rows],
    }
    return json.dumps(payload, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


_WRITERS = {"md": to_markdown, "csv": to_csv, "tex": to_latex, "json": to_json}


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"md,csv"`` (or a list) -> ``("md", "csv")``; ValueError naming an unknown format.

    >>> parse_formats("md, json")
    ('md', 'json')
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    formats = tuple(dict.fromkeys(item.strip() for item in items if item.strip()))
    unknown = [f for f in formats if f not in _WRITERS]
    if unknown or not formats:
        raise ValueError(f"format(s) {unknown or text!r} not known; choose from {', '.join(FORMATS)}")
    return formats


def write_table(table: Table, out_dir: str | os.PathLike, formats: Sequence[str]) -> list[Path]:
    """Write ``table`` as ``<out_dir>/<name>.<format>`` for each format; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in parse_formats(formats):
        text = _WRITERS[fmt](table)
        if fmt == "md":
            text = f"## {table.title}\n\n" + (f"{table.caption}\n\n" if table.caption else "") + text + "\n"
        path = out / f"{table.name}.{fmt}"
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 2em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; }
th { background: #f0f0f0; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0 2.5em; }
figure img { max-width: 100%; border: 1px solid #ddd; }
nav li { margin: 0.1em 0; }
.caption { color: #555; max-width: 60em; }
details { margin-bottom: 1em; }
"""

# Tables longer than this are folded (the per-group table has thousands of rows).
_FOLD_ROWS = 60


def _html_table(table: Table) -> str:
    columns = table.columns
    numeric = {c for c in columns if _numeric_column(table, c)}
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in table.rows:
        cells = []
        for c in columns:
            css = ' class="num"' if c in numeric else ""
            cells.append(f"<td{css}>{html.escape(format_cell(_jsonable(row.get(c)), c))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    markup = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    if len(table.rows) > _FOLD_ROWS:
        markup = f"<details><summary>{len(table.rows)} rows (click to show)</summary>{markup}</details>"
    return markup


def write_index_html(
    out_dir: str | os.PathLike,
    *,
    title: str,
    summary: Sequence[str],
    tables: Sequence[Table],
    figures: Sequence[tuple[str, str, Path]],
) -> Path:
    """One self-contained page: every table, and every figure as an embedded PNG with links to its files.

    ``figures`` holds ``(anchor, caption, png_path)``; a PDF next to the PNG is linked too.
    """
    out = Path(out_dir)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    parts += [f"<p>{html.escape(line)}</p>" for line in summary]
    parts.append("<nav><h2>Contents</h2><ul>")
    parts += [f'<li><a href="#{html.escape(t.name)}">{html.escape(t.title)}</a></li>' for t in tables]
    parts += [f'<li><a href="#{html.escape(a)}">{html.escape(c)}</a></li>' for a, c, _ in figures]
    parts.append("</ul></nav>")
    parts.append("<h2>Tables</h2>")
    for table in tables:
        parts.append(f'<section id="{html.escape(table.name)}"><h3>{html.escape(table.title)}</h3>')
        if table.caption:
            parts.append(f'<p class="caption">{html.escape(table.caption)}</p>')
        files = " · ".join(
            f'<a href="tables/{html.escape(p.name)}">{p.suffix[1:]}</a>'
            for p in sorted((out / "tables").glob(f"{table.name}.*"))
        )
        if files:
            parts.append(f"<p>files: {files}</p>")
        parts.append(_html_table(table) + "</section>")
    parts.append("<h2>Figures</h2>")
    for anchor, caption, png in figures:
        data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
        rel = os.path.relpath(png, out)
        links = f'<a href="{html.escape(rel)}">png</a>'
        pdf = Path(png).with_suffix(".pdf")
        if pdf.exists():
            links += f' · <a href="{html.escape(os.path.relpath(pdf, out))}">pdf</a>'
        parts.append(
            f'<figure id="{html.escape(anchor)}"><figcaption><b>{html.escape(caption)}</b> ({links})</figcaption>'
            f'<img alt="{html.escape(caption)}" src="data:image/png;base64,{data}"></figure>'
        )
    parts.append("</body></html>")
    path = out / "index.html"
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path
