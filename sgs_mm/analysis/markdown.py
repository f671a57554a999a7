"""Markdown tables the analysis tools print (and write next to their PNGs)."""
from typing import Iterable


def md_cell(value) -> str:
    """``value`` as one table cell: ``|`` escaped as ``\\|`` (a bare pipe would start a new
    cell, e.g. in ``mean |W|``), line breaks as spaces."""
    text = ' '.join(str(value).splitlines())
    return text.replace('|', r'\|')


def md_row(cells: Iterable) -> str:
    """One table row: ``| a | b |``, every cell escaped by :func:`md_cell`."""
    return '| ' + ' | '.join(md_cell(c) for c in cells) + ' |'


def md_table(header: Iterable, rows: Iterable[Iterable]) -> str:
    """Header, separator and rows (no trailing newline)."""
    header = list(header)
    lines = [md_row(header), '|' + '---|' * len(header)]
    lines += [md_row(r) for r in rows]
    return '\n'.join(lines)
