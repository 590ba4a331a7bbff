"""`cinebot qr export`: the printable sheet of a cinema's touchpoints decodes back, with a real
QR reader (zxing-cpp), to each touchpoint's survey URL — or, with --wechat, to the WeChat
parametric codes the API made for each scene."""

from __future__ import annotations

import asyncio
import os
import re
import zlib
from pathlib import Path

import numpy as np
import pytest
import zxingcpp
from aiohttp.test_utils import TestClient
from PIL import Image

from bot.wechat.qrsheet import A4, SheetItem, render_pdf
from domain.touchpoints import Touchpoint, TouchpointKind
from tests.support import Standin, cinebot_command

PRINTED = {"demo-h1", "demo-h2", "demo-h3", "demo-h4", "demo-h5", "demo-imax",
           "demo-wc-east", "demo-wc-west", "demo-kiosk", "demo-bar"}


async def run_cli(*args: str, database_url: str, redis_url: str, cwd: Path, **env: str) -> tuple[int, str, str]:
    """The real `cinebot` in its own process, with these CINEBOT_* settings."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CINEBOT_")}
    environ.update(CINEBOT_DATABASE_URL=database_url, CINEBOT_REDIS_URL=redis_url, **env)
    proc = await asyncio.create_subprocess_exec(
        *cinebot_command(), *args, cwd=cwd, env=environ,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


def decode(path: Path) -> list[str]:
    return sorted(r.text for r in zxingcpp.read_barcodes(Image.open(path)))


async def test_the_png_sheet_decodes_to_every_printed_touchpoints_survey_url(
    client: TestClient, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    # `client` started the app with the demo seeded: the touchpoints exist.
    assert {t.code for t in await Touchpoint.filter(kind__in=["hall_exit", "restroom", "ticket_machine", "concession"])} == PRINTED
    sheet = tmp_path / "sheet.png"
    code, out, err = await run_cli(
        "qr", "export", "--cinema", "demo", "--out", str(sheet),
        database_url=database_url, redis_url=redis_url, cwd=tmp_path,
        CINEBOT_PUBLIC_URL="https://cinema.example.cn",
    )
    assert code == 0, err
    assert "10 个触点" in out and "H5 问卷链接" in out
    assert sheet.read_bytes().startswith(b"\x89PNG")
    assert decode(sheet) == sorted(f"https://cinema.example.cn/s/{c}" for c in PRINTED)


async def test_with_the_wechat_api_the_sheet_carries_a_parametric_code_per_scene(
    client: TestClient, database_url: str, redis_url: str, tmp_path: Path, standin: Standin
) -> None:
    sheet = tmp_path / "wechat.png"
    code, out, err = await run_cli(
        "qr", "export", "--out", str(sheet), "--wechat",
        database_url=database_url, redis_url=redis_url, cwd=tmp_path,
        CINEBOT_WECHAT_API_BASE=standin.url,
    )
    assert code == 0, err
    assert "微信带参二维码" in out
    made = [a for a in await standin.assets() if a["kind"] == "qrcode"]
    assert {a["scene"] for a in made} == {f"tp:{c}" for c in PRINTED}
    assert all(a["permanent"] for a in made)
    texts = decode(sheet)
    assert len(texts) == len(PRINTED) and all(t.startswith("http://weixin.qq.com/q/") for t in texts)


async def test_an_unreachable_api_falls_back_to_the_survey_urls(
    client: TestClient, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    sheet = tmp_path / "offline.png"
    code, out, err = await run_cli(
        "qr", "export", "--out", str(sheet), "--wechat",
        database_url=database_url, redis_url=redis_url, cwd=tmp_path,
        CINEBOT_WECHAT_API_BASE="http://127.0.0.1:9",  # nothing listens there
    )
    assert code == 0 and "不可用" in err
    assert decode(sheet) == sorted(f"http://127.0.0.1:8080/s/{c}" for c in PRINTED)


def rasterise(pdf: bytes, dpi: float = 150) -> list[np.ndarray]:
    """Each page's filled rectangles (the QR modules), drawn black on white."""
    scale = dpi / 72
    pages = []
    for raw in re.findall(rb"stream\n(.*?)\nendstream", pdf, re.S):
        ops = zlib.decompress(raw).decode("ascii")
        width, height = int(A4[0] * scale), int(A4[1] * scale)
        img = np.full((height, width), 255, dtype=np.uint8)
        for x, y, w, h in re.findall(r"([\d.]+) ([\d.]+) ([\d.]+) ([\d.]+) re", ops):
            x0, x1 = round(float(x) * scale), round((float(x) + float(w)) * scale)
            top = height - round((float(y) + float(h)) * scale)
            img[top : height - round(float(y) * scale), x0:x1] = 0
        pages.append(img)
    return pages


def test_the_pdf_sheet_draws_codes_that_decode_on_every_page() -> None:
    items = [
        SheetItem(f"https://c.example.cn/s/demo-t{i}", f"{i}号厅出口", f"demo-t{i}", (f"scene tp:demo-t{i}",))
        for i in range(14)
    ]
    pdf = render_pdf(items, "示例影城  扫码评价")
    assert pdf.startswith(b"%PDF-1.4") and pdf.rstrip().endswith(b"%%EOF")
    assert b"/Count 2" in pdf and b"STSong-Light" in pdf  # 14 codes: two A4 pages
    found: list[str] = []
    for page in rasterise(pdf):
        found += [r.text for r in zxingcpp.read_barcodes(page)]
    assert sorted(found) == sorted(i.data for i in items)


@pytest.mark.parametrize("bad", ["sheet.svg", "sheet"])
async def test_only_png_and_pdf_are_written(
    client: TestClient, database_url: str, redis_url: str, tmp_path: Path, bad: str
) -> None:
    code, _, err = await run_cli(
        "qr", "export", "--out", str(tmp_path / bad),
        database_url=database_url, redis_url=redis_url, cwd=tmp_path,
    )
    assert code != 0 and ".png" in err


async def test_touchpoints_are_seeded_for_the_demo_cinema_with_scene_and_kind(client: TestClient) -> None:
    points = {t.code: t for t in await Touchpoint.all()}
    assert points["demo-h3"].hall == "3号厅" and points["demo-h3"].scene == "tp:demo-h3"
    assert points["demo-eticket"].kind == TouchpointKind.ETICKET and not points["demo-eticket"].printed
    assert {t.kind for t in points.values()} == set(TouchpointKind)
