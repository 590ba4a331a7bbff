"""bench/console.py at a hundredth of the chain (PostgreSQL only: it seeds with
generate_series): it seeds, rebuilds the rollups, fetches every console page and export
through the real app and prints the table with its targets. Figures are not judged here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(
    not (os.environ.get("CINEBOT_TEST_DATABASE_URL") or "").startswith("postgres"),
    reason="the bench seeds PostgreSQL",
)
def test_the_console_bench_runs_at_a_hundredth_of_the_chain(database_url: str) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "console.py"), "--scale", "0.01", "--days", "60",
         "--repeat", "1", "--database-url", database_url],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "seeded:" in result.stderr and "tickets" in result.stderr
    for page in ("experience 7d", "service 30d", "sales year", "projectors 7d", "sales shows.xlsx"):
        assert page in out, out
    assert "p95 ≤ 300 ms on every page" in out
    assert "queries per page" in out
    assert "FAIL  every page answered" not in out, out
