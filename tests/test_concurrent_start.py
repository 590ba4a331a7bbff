"""Several processes starting together on a fresh database (web replicas, workers) all come up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_three_processes_migrating_a_fresh_database_at_once_all_succeed(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    cinebot = Path(sys.executable).with_name("cinebot")
    env = {**os.environ, "CINEBOT_DATABASE_URL": database_url, "CINEBOT_REDIS_URL": redis_url}
    procs = [
        subprocess.Popen(
            [str(cinebot), "migrate"], env=env, cwd=tmp_path,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(3)
    ]
    results = [p.communicate(timeout=60) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err[-2000:]
        assert "数据库结构已是最新" in out
