"""One table model, three renderings: terminal text, Markdown, HTML."""

from __future__ import annotations

import html
from dataclasses import dataclass, field


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    # per column "l" or "r"; numbers read better right-aligned
    align: list[str] | None = None

    def _align(self, i: int) -> str:
        return self.align[i] if self.align and i < len(self.align) else "l"

    def _cells(self) -> list[list[str]]:
        width = len(self.headers)
        return [[str(c) for c in row] + [""] * (width - len(row)) for row in self.rows]


def to_text(table: Table, indent: str = "  ") -> str:
    rows = [table.headers, *table._cells()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(table.headers))]
    lines = []
    for row in rows:
        cells = [
            c.rjust(w) if table._align(i) == "r" else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=False))
        ]
        lines.append((indent + "  ".join(cells)).rstrip())
    return "\n".join(lines)


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def to_markdown(table: Table) -> str:
    head = "| " + " | ".join(_md_cell(h) for h in table.headers) + " |"
    rule = "|" + "|".join(
        "---:" if table._align(i) == "r" else "---" for i in range(len(table.headers))
    )
    rule += "|"
    body = ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table._cells()]
    return "\n".join([head, rule, *body])


def to_html(table: Table, row_classes: list[str] | None = None) -> str:
    def cell(tag: str, text: str, i: int) -> str:
        cls = ' class="num"' if table._align(i) == "r" else ""
        return f"<{tag}{cls}>{html.escape(text)}</{tag}>"

    head = "".join(cell("th", h, i) for i, h in enumerate(table.headers))
    body = []
    for n, row in enumerate(table._cells()):
        cls = row_classes[n] if row_classes and n < len(row_classes) else ""
        attr = f' class="{html.escape(cls)}"' if cls else ""
        body.append(f"<tr{attr}>" + "".join(cell("td", c, i) for i, c in enumerate(row)) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
