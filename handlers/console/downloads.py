"""A console ``Table`` as a file to download: CSV (UTF-8 with a BOM, so Excel reads the
Chinese) or XLSX (openpyxl). Column titles are the table's Chinese titles; money is yuan as
a number, shares are percentages, durations are h:mm:ss, times are Shanghai time.

Cells come from people (comments, names): a text cell never becomes a formula — CSV cells
that Excel would evaluate (``= + - @``) get a leading apostrophe, XLSX cells are typed as
strings, and characters XLSX cannot hold are dropped rather than failing the export.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from aiohttp import web
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from bot.infra.clock import SHANGHAI
from handlers.console.base import Column, Table

FORMATS = ("csv", "xlsx")
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER_FORMATS = {
    "int": "#,##0",
    "money": "#,##0.00",
    "percent": "0.0%",
    "seconds": "[h]:mm:ss",
    "datetime": "yyyy-mm-dd hh:mm",
    "date": "yyyy-mm-dd",
}


def _yuan(fen: Any) -> Decimal:
    return (Decimal(int(fen)) / 100).quantize(Decimal("0.01"))


def _local(moment: datetime) -> datetime:
    """Shanghai wall time, naive (what a spreadsheet holds); naive input is UTC, as stored."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(SHANGHAI).replace(tzinfo=None)


def _hms(seconds: float) -> str:
    total = round(seconds)
    sign = "-" if total < 0 else ""
    hours, rest = divmod(abs(total), 3600)
    return f"{sign}{hours}:{rest // 60:02d}:{rest % 60:02d}"


def csv_cell(value: Any, kind: str) -> str:
    if value is None:
        return ""
    if kind == "money":
        return str(_yuan(value))
    if kind == "percent":
        return f"{float(value) * 100:.1f}%"
    if kind == "seconds":
        return _hms(float(value))
    if kind == "datetime" and isinstance(value, datetime):
        return f"{_local(value):%Y-%m-%d %H:%M}"
    if kind == "date" and isinstance(value, date):
        return value.isoformat()
    if kind == "int" and isinstance(value, int | float):
        return str(value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_bytes(table: Table) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([c.title for c in table.columns])
    for row in table.rows:
        writer.writerow([csv_cell(row.get(c.key), c.kind) for c in table.columns])
    return out.getvalue().encode("utf-8-sig")


def _xlsx_value(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "money":
        return float(_yuan(value))
    if kind == "percent":
        return float(value)
    if kind == "seconds":
        return float(value) / 86400  # a spreadsheet duration is a fraction of a day
    if kind == "datetime" and isinstance(value, datetime):
        return _local(value)
    if kind == "date" and isinstance(value, date):
        return value
    if kind == "int" and isinstance(value, int | float):
        return value
    return ILLEGAL_CHARACTERS_RE.sub("", str(value))


def _width(text: str) -> int:
    return sum(2 if ord(ch) > 0x2E7F else 1 for ch in text)


def xlsx_bytes(table: Table) -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.title = _sheet_title(table.title or table.name)
    columns: list[Column] = list(table.columns)
    bold = Font(bold=True)
    widths = [_width(c.title) for c in columns]
    for index, column in enumerate(columns, start=1):
        cell = sheet.cell(row=1, column=index, value=column.title)
        cell.font = bold
    for r, row in enumerate(table.rows, start=2):
        for index, column in enumerate(columns, start=1):
            value = _xlsx_value(row.get(column.key), column.kind)
            cell = sheet.cell(row=r, column=index)
            cell.value = value
            if isinstance(value, str):
                cell.data_type = "s"  # "=…" from a comment stays text, never a formula
                widths[index - 1] = max(widths[index - 1], min(_width(value), 60))
            elif value is not None and column.kind in _NUMBER_FORMATS:
                cell.number_format = _NUMBER_FORMATS[column.kind]
                widths[index - 1] = max(widths[index - 1], 12)
    for index, width in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = max(width + 2, 8)
    sheet.freeze_panes = "A2"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _sheet_title(text: str) -> str:
    # Excel: at most 31 characters, none of []:*?/\
    cleaned = "".join(" " if ch in "[]:*?/\\" else ch for ch in text).strip()
    return ILLEGAL_CHARACTERS_RE.sub("", cleaned)[:31] or "Sheet1"


def download(table: Table, fmt: str, filename: str) -> web.Response:
    """The file as a download named ``filename`` (without extension; may be Chinese)."""
    if fmt == "csv":
        body, content_type = csv_bytes(table), "text/csv"
    elif fmt == "xlsx":
        body, content_type = xlsx_bytes(table), XLSX_TYPE
    else:
        raise ValueError(fmt)
    name = f"{filename}.{fmt}"
    ascii_name = "".join(ch if ch.isascii() and ch.isalnum() or ch in "-_." else "_" for ch in name)
    disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"
    headers = {"Content-Disposition": disposition, "Cache-Control": "no-store",
               "X-Content-Type-Options": "nosniff"}
    if fmt == "csv":
        return web.Response(body=body, content_type=content_type, charset="utf-8", headers=headers)
    return web.Response(body=body, content_type=content_type, headers=headers)
