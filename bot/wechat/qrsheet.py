"""A printable sheet of labelled QR codes (``cinebot qr export``): PNG or PDF, made offline.

Each code is drawn with ``segno`` from its module matrix, never fetched:

* **PNG** (Pillow): one image, three codes a row, each with its place name, the
  scene and the URL under it. Chinese labels need a CJK font (``--font``,
  ``CINEBOT_QR_FONT`` or a usual system path); without one the labels fall back
  to their ASCII form (code and kind) and the caller is told.
* **PDF** (written here, no library): A4 pages, each code as filled vector
  rectangles, so it prints sharp at any size; Chinese labels use the standard
  Adobe-GB1 font ``STSong-Light`` (not embedded: every PDF reader substitutes
  a Song face), URLs Helvetica.
"""

from __future__ import annotations

import io
import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import segno

PER_ROW = 3
CJK_FONT_PATHS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
    "/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
    "/System/Library/Fonts/PingFang.ttc",
    "/System/Library/Fonts/STHeiti Medium.ttc",
    "C:/Windows/Fonts/msyh.ttc",
    "C:/Windows/Fonts/simhei.ttf",
)
LATIN_FONT_PATHS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
)


@dataclass(frozen=True, slots=True)
class SheetItem:
    data: str  # what the code encodes: the survey URL or the WeChat QR url
    title: str  # 3号厅出口
    ascii_title: str  # demo-h3 · hall exit (when no CJK font is at hand)
    lines: tuple[str, ...] = ()  # printed small under the title: scene, URL


def matrix(data: str) -> list[list[bool]]:
    """The QR code's modules (True = dark), with segno's quiet zone of 4 modules."""
    qr = segno.make(data, error="m", micro=False)
    border = 4
    size = len(qr.matrix) + 2 * border
    grid = [[False] * size for _ in range(size)]
    for y, row in enumerate(qr.matrix):
        for x, dark in enumerate(row):
            grid[y + border][x + border] = bool(dark)
    return grid


def find_font(explicit: str | None = None) -> str | None:
    """A font file that can draw Chinese, if there is one."""
    for candidate in (explicit, os.environ.get("CINEBOT_QR_FONT"), *CJK_FONT_PATHS):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


# --- PNG ------------------------------------------------------------------------------------


def render_png(
    items: Sequence[SheetItem], heading: str, *, font_path: str | None = None, module_px: int = 7,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[bytes, bool]:
    """(PNG bytes, whether Chinese labels could be drawn); ``progress(done, total)`` per code."""
    from PIL import Image, ImageDraw, ImageFont

    cjk = find_font(font_path)
    latin = next((p for p in LATIN_FONT_PATHS if Path(p).is_file()), None)

    def font(size: int, chinese: bool) -> Any:
        path = cjk if (chinese and cjk) else (cjk or latin)
        if path:
            return ImageFont.truetype(path, size)
        return ImageFont.load_default(size)

    grids = []
    for item in items:
        grids.append(matrix(item.data))
        if progress is not None:
            progress(len(grids), len(items))
    qr_px = max((len(g) for g in grids), default=29) * module_px
    cell_w, cell_h = qr_px + 60, qr_px + 150
    rows = max(1, -(-len(items) // PER_ROW))
    width, top = cell_w * PER_ROW, 90
    image = Image.new("L", (width, top + rows * cell_h + 30), 255)
    draw = ImageDraw.Draw(image)
    draw.text((30, 25), heading if cjk else _ascii(heading, "cinebot QR"), fill=0, font=font(34, True))
    for i, (item, grid) in enumerate(zip(items, grids, strict=True)):
        x0 = (i % PER_ROW) * cell_w + 30
        y0 = top + (i // PER_ROW) * cell_h
        size = len(grid) * module_px
        offset = (qr_px - size) // 2
        tile = Image.new("1", (len(grid), len(grid)), 1)
        tile.putdata([0 if dark else 1 for row in grid for dark in row])
        image.paste(tile.resize((size, size), Image.Resampling.NEAREST), (x0 + offset, y0 + offset))
        draw.rectangle((x0 - 8, y0 - 8, x0 + qr_px + 8, y0 + cell_h - 20), outline=180, width=2)
        title = item.title if cjk else item.ascii_title
        draw.text((x0, y0 + qr_px + 8), title, fill=0, font=font(30 if cjk else 20, True))
        for n, line in enumerate(item.lines):
            draw.text((x0, y0 + qr_px + 50 + n * 22), line, fill=60, font=font(16, False))
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue(), cjk is not None


def _ascii(text: str, fallback: str) -> str:
    kept = "".join(ch for ch in text if ch.isascii()).strip()
    return kept or fallback


# --- PDF ------------------------------------------------------------------------------------

A4 = (595.0, 842.0)  # points
PDF_PER_PAGE = 12  # 3 × 4


def _hex16(text: str) -> str:
    return text.encode("utf-16-be").hex().upper()


def _latin(text: str) -> str:
    safe = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)
    return safe.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def pdf_page_ops(items: Sequence[SheetItem], heading: str, page: int, pages: int) -> str:
    """The content stream of one page (exposed for tests that rasterise it)."""
    width, height = A4
    margin, cols, rows = 36.0, PER_ROW, 4
    cell_w = (width - 2 * margin) / cols
    cell_h = (height - 2 * margin - 40) / rows
    qr_pt = min(cell_w - 30, cell_h - 70)
    ops = ["BT /F1 18 Tf", f"{margin:.2f} {height - margin - 18:.2f} Td <{_hex16(heading)}> Tj ET"]
    if pages > 1:
        ops.append(f"BT /F2 9 Tf {width - margin - 40:.2f} {height - margin - 14:.2f} Td ({page}/{pages}) Tj ET")
    for i, item in enumerate(items):
        col, row = i % cols, i // cols
        x0 = margin + col * cell_w + (cell_w - qr_pt) / 2
        top = height - margin - 40 - row * cell_h
        grid = matrix(item.data)
        module = qr_pt / len(grid)
        ops.append("0 g")
        for y, line in enumerate(grid):
            x = 0
            while x < len(line):
                if not line[x]:
                    x += 1
                    continue
                run = x
                while run < len(line) and line[run]:
                    run += 1
                # A hair of overlap so no reader shows seams between modules.
                ops.append(
                    f"{x0 + x * module:.3f} {top - (y + 1) * module:.3f} "
                    f"{(run - x) * module + 0.02:.3f} {module + 0.02:.3f} re"
                )
                x = run
        ops.append("f")
        text_y = top - qr_pt - 14
        ops.append(f"BT /F1 12 Tf {x0:.2f} {text_y:.2f} Td <{_hex16(item.title)}> Tj ET")
        for n, extra in enumerate(item.lines):
            ops.append(f"BT /F2 6.5 Tf {x0:.2f} {text_y - 11 - n * 8:.2f} Td ({_latin(extra)}) Tj ET")
    return "\n".join(ops)


def render_pdf(
    items: Sequence[SheetItem], heading: str, progress: Callable[[int, int], None] | None = None
) -> bytes:
    """``progress(done, total)``: codes drawn so far, after each page."""
    chunks = [items[i : i + PDF_PER_PAGE] for i in range(0, len(items), PDF_PER_PAGE)] or [[]]
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog = add(b"")  # filled in below, once the pages object exists
    pages_id = add(b"")
    descriptor = add(
        b"<< /Type /FontDescriptor /FontName /STSong-Light /Flags 6 /FontBBox [-25 -254 1000 880]"
        b" /ItalicAngle 0 /Ascent 880 /Descent -120 /CapHeight 880 /StemV 93 >>"
    )
    cid = add(
        b"<< /Type /Font /Subtype /CIDFontType0 /BaseFont /STSong-Light"
        b" /CIDSystemInfo << /Registry (Adobe) /Ordering (GB1) /Supplement 4 >>"
        + f" /FontDescriptor {descriptor} 0 R /DW 1000 /W [1 95 500] >>".encode()
    )
    song = add(
        b"<< /Type /Font /Subtype /Type0 /BaseFont /STSong-Light-UniGB-UCS2-H"
        + f" /Encoding /UniGB-UCS2-H /DescendantFonts [{cid} 0 R] >>".encode()
    )
    helvetica = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    page_ids = []
    for n, chunk in enumerate(chunks, start=1):
        stream = zlib.compress(pdf_page_ops(chunk, heading, n, len(chunks)).encode("ascii"))
        if progress is not None:
            progress(min(n * PDF_PER_PAGE, len(items)), len(items))
        content = add(
            f"<< /Length {len(stream)} /Filter /FlateDecode >>\nstream\n".encode()
            + stream + b"\nendstream"
        )
        page_ids.append(add(
            f"<< /Type /Page /Parent {pages_id} 0 R /MediaBox [0 0 {A4[0]:.0f} {A4[1]:.0f}]"
            f" /Resources << /Font << /F1 {song} 0 R /F2 {helvetica} 0 R >> >>"
            f" /Contents {content} 0 R >>".encode()
        ))
    objects[catalog - 1] = f"<< /Type /Catalog /Pages {pages_id} 0 R >>".encode()
    kids = " ".join(f"{p} 0 R" for p in page_ids)
    objects[pages_id - 1] = f"<< /Type /Pages /Kids [{kids}] /Count {len(page_ids)} >>".encode()
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode())
    out.write(
        f"trailer\n<< /Size {len(objects) + 1} /Root {catalog} 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return out.getvalue()


def write_sheet(
    path: str | Path, items: Sequence[SheetItem], heading: str, *, font_path: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[str, bool]:
    """Write ``path`` (.png or .pdf); returns (format, whether Chinese labels were drawn).

    ``progress(done, total)``: QR codes drawn so far."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix == ".pdf":
        target.write_bytes(render_pdf(items, heading, progress))
        return "pdf", True
    if suffix == ".png":
        data, chinese = render_png(items, heading, font_path=font_path, progress=progress)
        target.write_bytes(data)
        return "png", chinese
    raise ValueError("the sheet is written as .png or .pdf")


SURVEY_PATH = "/s/"


def survey_url(public_url: str, code: str) -> str:
    """The H5 survey page of a touchpoint."""
    return f"{public_url.rstrip('/')}{SURVEY_PATH}{code}"
