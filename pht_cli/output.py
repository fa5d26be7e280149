"""Where every ``pht`` command prints, and how it fails: one sentence on stderr, exit code 1; SHACL reports and
tables in one shape for every command."""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)
_GAP = 3  # characters between two columns of a fitted table: padding, rule, padding (no outer edge)


def fail(message: str) -> typer.Exit:
    """Print one sentence to stderr and return the exit to raise (code 1)."""
    errors.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(1)


def report_lines(report: Any) -> list[str]:
    """One line per SHACL result -- message, focus node, path, value -- of a report as the API sends it (JSON:
    ``focusNode``, ``resultPath``, ``value``, ``message``) or as ``graph_store`` makes it (``ValidationReport``)."""
    if hasattr(report, "to_dict"):
        report = report.to_dict()
    results = report.get("results", []) if isinstance(report, Mapping) else report or []
    lines = []
    for r in results:
        if not isinstance(r, Mapping):
            continue
        where = [f"{label} {r[key]}" for label, key in (("focus", "focusNode"), ("path", "resultPath"),
                                                         ("value", "value")) if r.get(key) is not None]
        lines.append(f"  - {r.get('message') or r.get('sourceConstraintComponent') or 'violation'}"
                     + (f" ({', '.join(where)})" if where else ""))
    return lines


def print_report(report: Any) -> None:
    """Print a SHACL report on stderr, one line per result (see :func:`report_lines`)."""
    for line in report_lines(report):
        errors.print(line, highlight=False, markup=False)


def print_table(out: Console, headers: Sequence[str], rows: Sequence[Sequence[str]], *, drop_empty: bool = False,
                hint: str = "") -> None:
    """Print rows within ``out``'s width without cutting a value inside a word (a terminal of 80 characters
    must be enough): a table when every column's longest word fits side by side -- the room left goes first to
    the columns nearest to showing their values on one line, so that times and ids stay whole and long text
    wraps at spaces -- else, like psql's expanded display, one block of ``name  value`` lines per row after one
    line saying why (ending with ``hint``). With ``drop_empty``, columns empty in every row are left out."""
    shown = [i for i in range(len(headers)) if not (drop_empty and rows) or any(row[i] for row in rows)]
    widths = [_longest_word(headers[i], (row[i] for row in rows)) for i in shown]
    spare = out.width - sum(widths) - _GAP * (len(shown) - 1)
    if spare >= 0:
        whole = [max([len(headers[i]), *(len(row[i]) for row in rows)]) for i in shown]
        for whole_only in (True, False):  # first make whole the columns that fit whole, nearest first
            for n in sorted(range(len(shown)), key=lambda n: whole[n] - widths[n]):
                grow = min(spare, whole[n] - widths[n])
                if grow == whole[n] - widths[n] or not whole_only:
                    widths[n] += grow
                    spare -= grow
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for i, width in zip(shown, widths):
            table.add_column(Text(headers[i]), width=width, overflow="fold")
        for row in rows:
            table.add_row(*(Text(row[i]) for i in shown))  # Text: a value is never read as markup
        out.print(table)
        return
    out.print(f"({len(shown)} columns do not fit {out.width} characters side by side: one block per row"
              f"{'; ' + hint if hint else ''})", soft_wrap=False, highlight=False, markup=False)
    blocks = Table(box=box.SIMPLE, show_header=False, show_edge=False, pad_edge=False)
    blocks.add_column(style="bold", no_wrap=True)
    blocks.add_column(overflow="fold")
    for row in rows:
        for i in shown:
            if row[i]:
                blocks.add_row(Text(headers[i]), Text(row[i]))
        blocks.add_section()
    out.print(blocks)


def _longest_word(header: str, values: Iterable[str]) -> int:
    return max([len(header), *(len(word) for value in values for word in value.split())])
