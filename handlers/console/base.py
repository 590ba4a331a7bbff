"""What every console section shares: who is looking, at what range, and what a section
offers (a page body, tables that export, rows behind a figure).

The shell (``handlers.console.shell``) owns the routes, the login and the page frame; each
section module (``experience``, ``service``, ``sales``, ``projectors``) exposes one
``SECTION`` built from these types, and the shell registers it.

Routes the shell serves for a section ``key`` (all behind login, each checked against
``Section.roles``):

- ``GET /console/{key}?range=today|7d|30d|custom&start=YYYY-MM-DD&end=YYYY-MM-DD&cinema=ID``
  → the frame around ``await section.render(ctx)``;
- ``GET /console/{key}/export/{table}.csv|.xlsx`` (same query) → ``await section.tables[table](ctx)``
  written as CSV (UTF-8 with BOM, so Excel opens Chinese correctly) or XLSX (openpyxl);
- ``GET /console/{key}/rows/{what}?…`` (same query plus the figure's own parameters) →
  the frame around ``await section.rows[what](ctx)`` (a ``Table``, shown as a page with its
  own export links): the rows behind a figure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from domain.people import StaffRole


class Range(StrEnum):
    TODAY = "today"
    WEEK = "7d"
    MONTH = "30d"
    CUSTOM = "custom"


@dataclass(frozen=True, slots=True)
class Viewer:
    """The logged-in person."""

    userid: str
    name: str
    role: StaffRole
    cinema_ids: tuple[int, ...]  # the cinemas this person may see


@dataclass(frozen=True, slots=True)
class Scope:
    """What a page shows: the chosen cinemas (always within the viewer's) and business days
    ``start``..``end`` inclusive."""

    cinema_ids: tuple[int, ...]
    start: date
    end: date
    range: Range


@dataclass(frozen=True, slots=True)
class PageContext:
    viewer: Viewer
    scope: Scope
    now: datetime
    query: Mapping[str, str]  # the request's query (a figure's own parameters for ``rows``)
    base_url: str  # e.g. "/console/sales", for links inside the section
    link: Callable[..., str]  # link(path_suffix="", **params) keeps range and cinema, adds params


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    title: str  # Chinese, as shown and exported
    kind: str = "text"  # text | int | money (fen) | percent (0..1) | seconds | datetime | date


@dataclass(slots=True)
class Table:
    name: str  # used in the export file name
    title: str
    columns: Sequence[Column]
    rows: Sequence[Mapping[str, Any]]
    links: Mapping[str, Callable[[Mapping[str, Any]], str | None]] = field(default_factory=dict)
    # column key -> the URL of the rows behind that cell (None: no link)


Render = Callable[[PageContext], Awaitable[str]]
TableFn = Callable[[PageContext], Awaitable[Table]]


@dataclass(frozen=True, slots=True)
class Section:
    key: str  # URL part: experience | service | sales | projectors
    title: str  # nav label: 体验 | 服务 | 销售 | 放映设备
    roles: frozenset[StaffRole]  # who may open it
    render: Render  # the page body (HTML), figures and charts
    tables: Mapping[str, TableFn]  # exportable tables by name
    rows: Mapping[str, TableFn] = field(default_factory=dict)  # drill-downs by name
