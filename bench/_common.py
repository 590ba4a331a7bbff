"""What the benchmarks share: the servers they start (a throwaway PostgreSQL cluster,
``redis-server``, child processes such as ``cinebot serve --demo`` or the API stand-in) and
the wait for them to be up, CPU accounting from /proc, the progress line, percentiles, text
tables, and the PASS/FAIL lines of their targets.

A bench runs as a script (``.venv/bin/python bench/<name>.py``): it puts the repository root
on ``sys.path`` first, then imports from here (``bench._common``). Nothing here imports
cinebot itself, and aiohttp and redis only where they are used.
"""

from __future__ import annotations

import asyncio
import glob
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import aiohttp

ROOT = Path(__file__).resolve().parents[1]


def now() -> float:
    return time.monotonic()


# --------------------------------------------------------------------------- results


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def target(ok: bool, text: str) -> str:
    """A target's line: ``PASS  text`` or ``FAIL  text``."""
    return f"{verdict(ok)}  {text}"


def percentile(values: Iterable[float], q: float) -> float:
    """The value at index ⌊q·n⌋ of the n sorted values (the largest for q = 1); NaN if none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def nearest_rank(values: Iterable[float], q: float) -> float:
    """The q-quantile by nearest rank: the smallest value with at least q·n of the n values
    at or below it; NaN if none."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, int(q * len(ordered) + 0.999999) - 1))
    return ordered[rank]


class Table:
    """A text table of fixed-width columns: the first ``left`` columns left-aligned, the
    others right-aligned, ``sep`` between them. A width of 0 takes the value as it is (a
    last, free-text column)."""

    def __init__(
        self, columns: Sequence[tuple[str, int]], *, left: int = 1, sep: str = "  "
    ) -> None:
        self.columns, self.left, self.sep = columns, left, sep

    def row(self, values: Sequence[object]) -> str:
        return self.sep.join(
            f"{v!s:<{w}}" if i < self.left else f"{v!s:>{w}}"
            for i, (v, (_, w)) in enumerate(zip(values, self.columns))
        )

    @property
    def header(self) -> str:
        return self.row([title for title, _ in self.columns])

    def lines(self, rows: Iterable[Sequence[object]]) -> list[str]:
        """The header, a rule as wide, then the rows."""
        head = self.header
        return [head, "-" * len(head), *(self.row(r) for r in rows)]


class Progress:
    """A progress line on stderr for ``total`` items: redrawn in place on a terminal,
    otherwise a line every 2 s; ``ticker`` redraws it until cancelled."""

    def __init__(self, label: str, total: int, *, width: int = 22, digits: int = 7,
                 unit: str = "/s") -> None:
        self.label, self.total, self.done = label, total, 0
        self.width, self.digits, self.unit = width, digits, unit
        self.tty = sys.stderr.isatty()
        self.started = time.perf_counter()
        self._last = 0.0

    def show(self, final: bool = False) -> None:
        t = time.perf_counter()
        elapsed = t - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        line = (f"  {self.label:<{self.width}} {self.done:>{self.digits}}/{self.total}"
                f"  {rate:7.0f} {self.unit}  {elapsed:5.1f} s")
        if self.tty:
            sys.stderr.write("\r" + line + ("\n" if final else ""))
        elif final or t - self._last >= 2.0:
            sys.stderr.write(line + "\n")
            self._last = t
        sys.stderr.flush()

    async def ticker(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            self.show()


async def paced(n: int, rate: float, one: Callable[[int], Awaitable[None]]) -> None:
    """Open loop: ``one(i)`` started at ``i / rate`` seconds from now, whether or not the
    earlier ones are done; returns when all are."""
    started = now()
    tasks = []
    for i in range(n):
        delay = started + i / rate - now()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)


# --------------------------------------------------------------------------- CPU (Linux /proc)


def own_cpu() -> float:
    """User + system CPU seconds of this process."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def proc_cpu(pid: int | None) -> float | None:
    """User + system CPU seconds of a process (all its threads), or None."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine, all cores (minus idle and iowait)."""
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- processes


def free_port(*, with_next: bool = False) -> int:
    """A free loopback TCP port; ``with_next``: one whose successor is free too."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    if with_next:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                return free_port(with_next=True)
    return port


class Proc:
    """One child process, restartable with the same command, logging to its own file in
    ``workdir`` (``<name>.<start>.log``; nowhere when ``quiet``)."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], workdir: str,
                 port: int | None = None, *, cwd: str | Path | None = None,
                 quiet: bool = False) -> None:
        self.name = name
        self.cmd = cmd
        self.env = env
        self.workdir = workdir
        self.cwd = cwd or workdir
        self.port = port
        self.quiet = quiet
        self.generation = 0
        self.popen: subprocess.Popen[bytes] | None = None
        self.logs: list[str] = []

    def start(self) -> None:
        self.generation += 1
        # A session of its own: a Ctrl+C in the terminal reaches only the bench, which
        # then stops its children itself.
        if self.quiet:
            self.popen = subprocess.Popen(
                self.cmd, env=self.env, cwd=self.cwd, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True,
            )
            return
        path = os.path.join(self.workdir, f"{self.name}.{self.generation}.log")
        self.logs.append(path)
        with open(path, "wb") as out:
            self.popen = subprocess.Popen(
                self.cmd, env=self.env, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            assert self.popen is not None
            try:
                self.popen.send_signal(sig)
            except ProcessLookupError:
                pass
            if sig == signal.SIGKILL:
                self.popen.wait()

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``grace`` seconds."""
        if not self.alive():
            return
        assert self.popen is not None
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def tail(self, lines: int = 30) -> str:
        if not self.logs:
            return ""
        try:
            return "\n".join(Path(self.logs[-1]).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


async def wait_http(
    proc: Proc, session: aiohttp.ClientSession, path: str, timeout: float = 120
) -> None:
    """Until ``GET http://127.0.0.1:<proc.port><path>`` answers 200; RuntimeError (with
    the end of its log) if the process exits or ``timeout`` seconds pass first."""
    import aiohttp

    deadline = now() + timeout
    url = f"http://127.0.0.1:{proc.port}{path}"
    while now() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited while starting:\n{proc.tail()}")
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                if resp.status == 200:
                    return
        except (aiohttp.ClientError, asyncio.TimeoutError):
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{proc.name} did not become healthy in {timeout:.0f} s:\n{proc.tail()}")


async def wait_log(proc: Proc, needle: str, timeout: float = 120) -> None:
    """Until ``needle`` shows up in the process's log."""
    deadline = now() + timeout
    while now() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited while starting:\n{proc.tail()}")
        try:
            if needle in Path(proc.logs[-1]).read_text(errors="replace"):
                return
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{proc.name} did not report ready in {timeout:.0f} s:\n{proc.tail()}")


class DemoServer:
    """A real ``cinebot serve --demo`` in its own process: a fresh SQLite file and the
    embedded Redis in a temp dir (``workdir``), the outbox sender running in it, the
    WeChat/WeCom API stand-in on port + 1. As a context manager: stopped (and its temp dir
    removed) on the way out, and after an error the end of its log printed to stderr."""

    def __init__(self, prefix: str = "cinebot-serve-") -> None:
        self.workdir = tempfile.mkdtemp(prefix=prefix)
        self.port = free_port(with_next=True)
        self.url = f"http://127.0.0.1:{self.port}"
        self.standin = f"http://127.0.0.1:{self.port + 1}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CINEBOT_")}
        env.update(CINEBOT_LOG_LEVEL="WARNING", CINEBOT_LOG_FORMAT="text", PYTHONPATH=str(ROOT))
        cmd = [sys.executable, "-m", "bot.cli", "serve", "--demo", "--port", str(self.port)]
        self.proc = Proc("server", cmd, env, self.workdir, self.port)

    async def start(self, http: aiohttp.ClientSession) -> None:
        self.proc.start()
        await wait_http(self.proc, http, "/healthz", timeout=120)

    def tail(self) -> str:
        return self.proc.tail()

    def stop(self) -> None:
        self.proc.stop(grace=15)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> DemoServer:
        return self

    def __exit__(self, kind: object, error: BaseException | None, tb: object) -> None:
        if isinstance(error, Exception):
            print(self.tail(), file=sys.stderr)
        self.stop()


# --------------------------------------------------------------------------- Redis


def redis_command(binary: str, port: int, directory: str, *, appendonly: bool) -> list[str]:
    """``redis-server`` on a loopback port, no RDB snapshots; with ``appendonly`` its AOF
    (fsync every second) keeps the data across a stop and start."""
    aof = ["yes", "--appendfsync", "everysec"] if appendonly else ["no"]
    return [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", *aof,
            "--dir", directory]


def redis_version(binary: str) -> str:
    """e.g. ``Redis server v=7.0.15``."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    return out.split(" sha=")[0].strip()


def wait_for_redis(url: str, proc: Proc, tries: int = 200) -> None:
    """Until the server answers PING (every 50 ms); RuntimeError if it exits first."""
    import redis

    for _ in range(tries):
        try:
            redis.Redis.from_url(url, socket_timeout=1).ping()
            return
        except (redis.ConnectionError, redis.TimeoutError):
            if not proc.alive():
                break
            time.sleep(0.05)
    raise RuntimeError(f"redis-server did not start:\n{proc.tail()}")


# --------------------------------------------------------------------------- PostgreSQL


def find_pgbin() -> str | None:
    """The directory of ``initdb``, ``pg_ctl`` and ``postgres``: Debian's
    ``/usr/lib/postgresql/*/bin``, newest first, else the one of ``initdb`` on PATH."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in p.split("/")[-2].split(".")],
        reverse=True,
    )
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(os.path.dirname(os.path.realpath(initdb)))
    for d in candidates:
        if all(os.access(os.path.join(d, b), os.X_OK) for b in ("initdb", "pg_ctl", "postgres")):
            return d
    return None


def as_postgres() -> list[str] | None:
    """The prefix that runs a command as the ``postgres`` system user (created if missing)
    when we are root — PostgreSQL refuses to run as root —, [] when we are not, None when
    we are root without ``runuser``."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        return None
    if subprocess.run(["id", "-u", "postgres"], capture_output=True).returncode:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir",
             "/nonexistent", "--shell", "/usr/sbin/nologin", "postgres"], check=True)
    return [runuser, "-u", "postgres", "--"]


class Postgres:
    """A throwaway PostgreSQL cluster under ``workdir``: superuser ``postgres`` with a random
    password, on a free loopback port and a private socket directory, fsync,
    synchronous_commit and full_page_writes off. ``stop`` stops it (SIGKILL if pg_ctl
    cannot)."""

    def __init__(self, pgbin: str, workdir: str, as_pg: list[str]) -> None:
        self.pgbin, self.workdir, self.as_pg = pgbin, workdir, as_pg
        self.data = os.path.join(workdir, "pgdata")
        self.sock = os.path.join(workdir, "pgsock")
        self.pg_ctl = [*as_pg, f"{pgbin}/pg_ctl", "-D", self.data]
        self.port = 0
        self.pid: int | None = None
        self.password = secrets.token_hex(12)
        self.version = ""

    @property
    def url(self) -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/postgres"

    def start(self, max_connections: int) -> None:
        os.makedirs(self.data, mode=0o700)
        os.makedirs(self.sock)
        pwfile = os.path.join(self.workdir, "pgpass")
        Path(pwfile).write_text(self.password + "\n")
        log = os.path.join(self.workdir, "postgres.log")
        Path(log).touch()
        if self.as_pg:
            for path in (self.data, self.sock, pwfile, log):
                shutil.chown(path, "postgres")
        init = subprocess.run(
            [*self.as_pg, f"{self.pgbin}/initdb", "-D", self.data, "-U", "postgres",
             "--encoding=UTF8", "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256",
             f"--pwfile={pwfile}"],
            capture_output=True, text=True, cwd=self.workdir,
        )
        if init.returncode:
            raise RuntimeError(f"initdb failed:\n{init.stdout}{init.stderr}")
        self.port = free_port()
        opts = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.sock}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            f" -c max_connections={max_connections}"
        )
        started = subprocess.run(
            [*self.pg_ctl, "-l", log, "-o", opts, "-w", "-t", "60", "start"],
            capture_output=True, text=True, cwd=self.workdir,
        )
        if started.returncode:
            raise RuntimeError(f"PostgreSQL did not start:\n{Path(log).read_text()[-2000:]}")
        self.pid = int(Path(self.data, "postmaster.pid").read_text().split()[0])
        self.version = subprocess.run(
            [f"{self.pgbin}/postgres", "--version"], capture_output=True, text=True
        ).stdout.strip()

    def psql(self, *commands: str) -> None:
        """SQL commands as the superuser, over the private socket."""
        args = [arg for command in commands for arg in ("-c", command)]
        subprocess.run(
            [*self.as_pg, f"{self.pgbin}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h",
             self.sock, "-p", str(self.port), "-U", "postgres", "-d", "postgres", *args],
            check=True, cwd=self.workdir, capture_output=True,
        )

    def stop(self) -> None:
        if not os.path.exists(os.path.join(self.data, "postmaster.pid")):
            return
        done = subprocess.run(
            [*self.pg_ctl, "-m", "fast", "-w", "-t", "30", "stop"],
            capture_output=True, cwd=self.workdir,
        )
        if done.returncode and self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass
