"""The composition root: ``init_app(settings)`` wires every part, and nothing else does.

Every resource (database, Redis, HTTP client session, scheduler, background
tasks) is one cleanup context, reached through a typed ``web.AppKey``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from tortoise.connection import get_connection

import domain
from bot.chat.callbacks import CallbackEndpoint, LateReplySink
from bot.chat.channels import Inbound
from bot.chat.channels.wechat import WeChatCodec
from bot.chat.channels.wecom import WeComCodec
from bot.chat.dedup import Deduplicator, ProcessLease
from bot.chat.dialog import DialogStore
from bot.chat.replies import Reply
from bot.chat.router import Dispatcher, Understander
from bot.infra.clock import Clock, SystemClock
from bot.infra.metrics import CONTENT_TYPE_LATEST, Metrics
from bot.infra.outage import STORE_DOWN, OutageLog
from bot.infra.redisbatch import CommandBatcher
from bot.infra.settings import Settings
from bot.infra.storage import EmbeddedRedis, open_database, open_redis
from bot.nlu import sentiment as feedback_text
from bot.nlu.catalog import FilmEntry
from bot.nlu.engine import NluEngine
from bot.seats.inventory import SeatInventory, Sold
from bot.wechat.api import WeChatApi, WeComApi
from bot.wechat.sender import ApiTransport, OutboxSender, SenderPolicy
from domain import demo as demo_data
from domain import outbox, telemetry_minutes, ticketing
from domain.workorders import Kind
from handlers import alert_cards, build_router, pages
from handlers import api as ticket_api
from handlers.actors import ActorDirectory
from handlers.api import feedback as feedback_api
from handlers.console import shell as console
from handlers.console.context import CONSOLE, Console
from handlers.digest_card import DigestCards
from handlers.feedback_loop import FeedbackMessages
from handlers.handoff import HandoffQueue
from handlers.late_replies import LateReplies
from handlers.payments import Payments
from handlers.reference import ReferenceData
from handlers.refund_alerts import RefundAlerts
from handlers.ticket_messages import TicketMessages
from handlers.workorder_messages import WorkOrderMessages
from jobs.context import JobContext
from jobs.locks import LeaderLocks
from jobs.scheduler import build_scheduler, stop_scheduler
from telemetry import ingest as telemetry_ingest
from telemetry import stream as telemetry_stream
from telemetry.aggregate import MinuteAggregates, MinuteFlusher

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey("clock", Clock)  # type: ignore[type-abstract]
METRICS = web.AppKey("metrics", Metrics)
REDIS = web.AppKey("redis", aioredis.Redis)
# Commands from the callback path (dedup, dialog state, 转人工, seat scripts) share its batches.
REDIS_BATCH = web.AppKey("redis_batch", CommandBatcher)
HTTP = web.AppKey("http", aiohttp.ClientSession)
SCHEDULER = web.AppKey("scheduler", AsyncIOScheduler)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
ACTORS = web.AppKey("actors", ActorDirectory)
TASKS = web.AppKey("tasks", set)
WECHAT = web.AppKey("wechat_endpoint", CallbackEndpoint)
WECOM = web.AppKey("wecom_endpoint", CallbackEndpoint)
SENDER = web.AppKey("outbox_sender", OutboxSender)
NLU = web.AppKey("nlu", NluEngine)
REFERENCE = web.AppKey("reference", ReferenceData)
INVENTORY = web.AppKey("inventory", SeatInventory)
PAYMENTS = web.AppKey("payments", Payments)
DESK = web.AppKey("desk", WorkOrderMessages)
TELEMETRY = web.AppKey("telemetry", telemetry_ingest.TelemetryIngest)
HANDOFFS = web.AppKey("handoffs", HandoffQueue)
LEASE = web.AppKey("process_lease", ProcessLease)
EMBEDDED_REDIS = web.AppKey("embedded_redis", EmbeddedRedis)
TELEMETRY_STREAM = web.AppKey("telemetry_stream", telemetry_stream.StreamConsumer)
TELEMETRY_MINUTES = web.AppKey("telemetry_minutes", MinuteFlusher)

Cleanup = Callable[[web.Application], AsyncIterator[None]]


def init_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    run_jobs: bool = True,
    seed_demo: bool = False,
    demo_history_days: int = 0,
    understand: Understander | None = None,
    late_reply: LateReplySink | None = None,
    sender_policy: SenderPolicy | None = None,
) -> web.Application:
    """The whole server. ``run_jobs`` also runs the outbox sender (the "worker" part)."""
    app = web.Application(
        client_max_size=settings.max_body_bytes + 1, middlewares=[_metrics_middleware]
    )
    app[SETTINGS] = settings
    app[CLOCK] = clock or SystemClock()
    app[METRICS] = Metrics()
    app[TASKS] = set()
    app.cleanup_ctx.extend(
        [
            _database,
            _redis,
            _http_session,
            _console,
            _nlu,
            _ticketing,
            _pipeline(understand, late_reply),
            _telemetry(run_jobs),
        ]
    )
    if seed_demo:
        app.cleanup_ctx.append(_seed_demo(demo_history_days))
    if run_jobs:
        app.cleanup_ctx.append(_scheduler(demo=seed_demo))
        app.cleanup_ctx.append(_outbox_sender(sender_policy))
    # Last, so it is cleaned up first: in-flight handlers finish before resources close.
    app.cleanup_ctx.append(_background_tasks)
    app.on_startup.append(_freeze_startup_objects)

    app.router.add_get("/wechat/callback", _endpoint_view(WECHAT, "get"))
    app.router.add_post("/wechat/callback", _endpoint_view(WECHAT, "post"))
    app.router.add_get("/wecom/callback", _endpoint_view(WECOM, "get"))
    app.router.add_post("/wecom/callback", _endpoint_view(WECOM, "post"))
    ticket_api.add_routes(app)
    pages.add_routes(app)
    console.add_routes(app)
    app.router.add_post("/telemetry/readings", telemetry_ingest.view(lambda: app[TELEMETRY]))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_view)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with open_database(settings.database_url, domain.MODEL_MODULES, domain.MIGRATIONS):
        yield


async def _redis(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]

    def keep(embedded: EmbeddedRedis) -> None:
        app[EMBEDDED_REDIS] = embedded

    async with open_redis(
        settings.redis_url, settings.embedded_redis_path, on_embedded=keep, supervise=True
    ) as client:
        app[REDIS] = client
        # The callback path's Redis: a batch not answered in 2 s fails (503, WeChat retries).
        app[REDIS_BATCH] = batcher = CommandBatcher(client, timeout=2.0)
        app[LEASE] = lease = ProcessLease(client)
        await lease.beat()
        heartbeat = asyncio.create_task(lease.run(), name="process-lease")
        try:
            yield
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            await batcher.aclose()


async def _http_session(app: web.Application) -> AsyncIterator[None]:
    timeout = aiohttp.ClientTimeout(total=10, connect=3)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        app[HTTP] = session
        yield


async def _console(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    wecom = WeComApi.from_settings(app[HTTP], app[REDIS], settings)
    app[CONSOLE] = Console(settings, app[CLOCK], app[REDIS], wecom, console.load_sections())
    yield


async def _nlu(app: web.Application) -> AsyncIterator[None]:
    reference = app[REFERENCE] = ReferenceData()

    async def live_films() -> list[FilmEntry]:
        return [FilmEntry(f.title, tuple(f.aliases)) for f, _ in await reference.film_names()]

    started = time.perf_counter()
    app[NLU] = await NluEngine.load(app[CLOCK], catalog_provider=live_films)
    feedback_text.warm_up()  # the comment classifier loads in the background
    log.info("intent model ready", extra={"seconds": round(time.perf_counter() - started, 2)})
    yield


async def _load_sold(showtime_id: int) -> Sold:
    seats, per_owner = await ticketing.sold_seats(showtime_id)
    return Sold(seats, per_owner)


async def _ticketing(app: web.Application) -> AsyncIterator[None]:
    settings, clock = app[SETTINGS], app[CLOCK]
    app[INVENTORY] = inventory = SeatInventory(app[REDIS], _load_sold, batcher=app[REDIS_BATCH])
    app[PAYMENTS] = payments = await Payments.open(app[HTTP], settings, clock)
    metrics = app[METRICS]

    def wake() -> None:
        sender = app.get(SENDER)
        if sender is not None:
            sender.wake()

    app[ticket_api.API] = ticket_api.ApiContext(
        clock=clock,
        inventory=inventory,
        payments=payments,
        notify=TicketMessages(settings.public_url, clock),
        wechat=WeChatApi.from_settings(app[HTTP], app[REDIS], settings),
        secret_key=settings.secret_key,
        public_url=settings.public_url,
        miniprogram_appid=settings.miniprogram_appid,
        miniprogram_secret=settings.miniprogram_secret,
        metrics_notify=lambda outcome: metrics.pay_notifies.labels(outcome).inc(),
        wake_sender=wake,
        refund_alerts=RefundAlerts(settings.wecom_agent_id, clock, wake),
    )
    try:
        yield
    finally:
        await payments.close()  # the sandbox's refund notifies still on their way


def _desk(app: web.Application) -> WorkOrderMessages:
    """The service desk's cards and messages: one per app, shared by chat and the SLA job."""
    if DESK not in app:
        settings = app[SETTINGS]
        app[DESK] = WorkOrderMessages(
            settings.public_url, settings.wecom_agent_id, app[CLOCK],
            views={Kind.ALERT: alert_cards}, wake=app[ticket_api.API].wake_sender,
        )
    return app[DESK]


def _pipeline(understand: Understander | None, late_reply: LateReplySink | None) -> Cleanup:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings, clock, metrics = app[SETTINGS], app[CLOCK], app[METRICS]
        actors = ActorDirectory(clock)
        batcher = app[REDIS_BATCH]
        handoffs = HandoffQueue(
            app[REDIS], batcher, clock, app[REFERENCE], settings.wecom_agent_id,
            wake=app[ticket_api.API].wake_sender,
        )
        dispatcher = Dispatcher(
            resolve_actor=actors.resolve,
            understand=understand or app[NLU].understand,
            on_error=lambda name: metrics.handler_errors.labels(name).inc(),
            clock=clock,
            redis=app[REDIS],
            settings=settings,
            reference=app[REFERENCE],
            inventory=app[INVENTORY],
            payments=app[PAYMENTS],
            tickets=app[ticket_api.API],
            desk=_desk(app),
            dialogs=DialogStore(app[REDIS], clock, batcher, rerun_ttl=settings.dedup_ttl),
            telemetry_rules=telemetry_ingest.StoredRulesBook(lambda: app.get(TELEMETRY)),
            handoffs=handoffs,
        )
        dispatcher.include(build_router())
        dispatcher.check()
        app[ACTORS] = actors
        app[DISPATCHER] = dispatcher
        app[feedback_api.FEEDBACK] = feedback_api.FeedbackContext(
            desk=dispatcher.deps.get("desk"),
            messages=FeedbackMessages(settings.public_url, settings.wecom_agent_id, clock, settings.secret_key),
        )
        dedup = Deduplicator(app[REDIS], ttl=settings.dedup_ttl, batcher=batcher, owner=app[LEASE])
        sink = late_reply or _waking(app, LateReplies(clock, settings.wecom_agent_id))
        common = {
            "dispatcher": dispatcher,
            "dedup": dedup,
            "clock": clock,
            "metrics": metrics,
            "late_reply": sink,
            "tasks": app[TASKS],
            "budget": settings.handler_budget,
            "max_body": settings.max_body_bytes,
        }
        app[WECHAT] = CallbackEndpoint(
            WeChatCodec(
                settings.wechat_token,
                settings.wechat_aes_key,
                settings.wechat_appid,
                settings.timestamp_tolerance,
                mode=settings.wechat_message_mode,
            ),
            **common,  # type: ignore[arg-type]
        )
        app[WECOM] = CallbackEndpoint(
            WeComCodec(
                settings.wecom_token,
                settings.wecom_aes_key,
                settings.wecom_corp_id,
                settings.wecom_agent_id,
                settings.timestamp_tolerance,
            ),
            **common,  # type: ignore[arg-type]
        )
        if settings.uses_demo_credentials:
            log.warning("running with the built-in demo credentials; set CINEBOT_* for production")
        drainer = asyncio.create_task(handoffs.run(), name="handoff-drainer")
        recovery = asyncio.create_task(_recover_journal(app), name="inbound-journal")
        app[HANDOFFS] = handoffs
        try:
            yield
        finally:
            recovery.cancel()
            # After in-flight handlers (``_background_tasks`` is cleaned up first): one last drain.
            handoffs.stop()
            await asyncio.gather(drainer, recovery, return_exceptions=True)

    return ctx


def _telemetry(tick: bool, every_s: float = 30.0) -> Cleanup:
    """One evaluator per process for the edge boxes' readings; its alerts become work
    orders with the desk's cards. With ``tick`` the wall clock checks for silent devices."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]

        def wake() -> None:
            sender = app.get(SENDER)
            if sender is not None:
                sender.wake()

        ingest = app[TELEMETRY] = telemetry_ingest.TelemetryIngest(
            app[CLOCK], _desk(app), app[REDIS], tolerance_s=settings.timestamp_tolerance,
            on_card=wake,
        )
        await ingest.refresh_rules(force=True)  # stored limits from the start
        task = None
        if tick:
            async def ticking() -> None:
                while True:
                    await asyncio.sleep(every_s)
                    try:
                        await ingest.tick()
                    except Exception:
                        log.exception("telemetry tick failed")

            task = asyncio.create_task(ticking(), name="telemetry-tick")
        # Per-minute aggregates of what this process ingests, written every minute and
        # at shutdown; the Redis stream's consumer group feeds the same ingest.
        minutes = MinuteAggregates()
        ingest.on_readings = minutes.add
        flusher = app[TELEMETRY_MINUTES] = MinuteFlusher(
            minutes, telemetry_minutes.record_minutes, app[CLOCK].timestamp
        )
        stream = app[TELEMETRY_STREAM] = telemetry_stream.StreamConsumer(app[REDIS], ingest)
        stop = asyncio.Event()
        workers = [
            asyncio.create_task(stream.run(stop), name="telemetry-stream"),
            asyncio.create_task(flusher.run(stop), name="telemetry-minutes"),
        ]
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            stop.set()  # the consumer stops reading before the last flush
            await asyncio.gather(*workers, return_exceptions=True)
            await flusher.close()

    return ctx


def _waking(app: web.Application, sink: LateReplySink) -> LateReplySink:
    """After recording a late reply, nudge this process's sender so it goes out at once."""

    async def record(inbound: Inbound, reply: Reply) -> None:
        await sink(inbound, reply)
        sender = app.get(SENDER)
        if sender is not None:
            sender.wake()

    return record


def _outbox_sender(policy: SenderPolicy | None) -> Cleanup:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        transport = ApiTransport(
            WeChatApi.from_settings(app[HTTP], app[REDIS], settings),
            WeComApi.from_settings(app[HTTP], app[REDIS], settings),
        )
        sender = OutboxSender(outbox, transport, app[CLOCK], policy)
        app[SENDER] = sender
        stop = asyncio.Event()
        task = asyncio.create_task(sender.run(stop), name="outbox-sender")
        try:
            yield
        finally:
            stop.set()
            await task

    return ctx


def _seed_demo(history_days: int) -> Cleanup:
    """The demo cinema, and its past ``history_days`` days of history (0: none)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        report = await demo_data.seed(app[CLOCK].now(), history_days=history_days)
        history = report.history
        log.info("demo data ready", extra={
            "showtimes_created": report.showtimes_created,
            "history_days_added": history.days if history else 0,
            "history_orders_added": history.orders if history else 0,
        })
        yield

    return ctx


def _scheduler(demo: bool) -> Cleanup:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        job_ctx = JobContext(
            clock=app[CLOCK],
            locks=LeaderLocks(app[REDIS]),
            inventory=app[INVENTORY],
            gateway=app[PAYMENTS],
            desk_notify=_desk(app),
            refund_alert=app[ticket_api.API].refund_alerts,
            buyer_notify=app[ticket_api.API].notify,
            feedback_invite=FeedbackMessages(
                app[SETTINGS].public_url, app[SETTINGS].wecom_agent_id, app[CLOCK],
                app[SETTINGS].secret_key,
            ).invite,
            telemetry_retention_days=app[SETTINGS].telemetry_retention_days,
            digest=DigestCards(
                app[SETTINGS].public_url, app[SETTINGS].wecom_agent_id, app[CLOCK]
            ).send_due,
        )
        scheduler = build_scheduler(job_ctx, demo=demo)
        scheduler.start()
        app[SCHEDULER] = scheduler
        try:
            yield
        finally:
            await stop_scheduler(scheduler)

    return ctx


async def _recover_journal(app: web.Application, every: float = 1.0) -> None:
    """Re-run messages answered by a process that died before handling them (bot.chat.dedup)."""
    outage = OutageLog(log, "inbound journal: redis unavailable")
    while True:
        await asyncio.sleep(every)
        for key in (WECHAT, WECOM):
            try:
                await app[key].recover()
            except STORE_DOWN as exc:
                outage.report(exc)
            except Exception:
                log.exception("inbound journal recovery failed")


async def _background_tasks(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[ACTORS].drain()
    tasks = set(app[TASKS])
    if tasks:
        log.info("waiting for %d in-flight handler(s)", len(tasks))
        _, pending = await asyncio.wait(tasks, timeout=10)
        for task in pending:
            task.cancel()


GC_YOUNG_THRESHOLD = 5000


async def _freeze_startup_objects(app: web.Application) -> None:
    # Everything allocated during start-up lives as long as the process: keep it out
    # of the cyclic GC's way so collections on the hot path stay short.
    gc.collect()
    gc.freeze()
    # A handled message leaves no cyclic garbage (its objects are freed as it ends), so a
    # young-generation collection mostly walks the requests in flight, and Python's
    # default of one every 700 allocations ran one every ~150 messages for nothing.
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def _endpoint_view(
    key: web.AppKey[CallbackEndpoint], method: str
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def view(request: web.Request) -> web.StreamResponse:
        endpoint = request.app[key]
        return await (endpoint.get(request) if method == "get" else endpoint.post(request))

    return view


async def healthz(request: web.Request) -> web.Response:
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(get_connection("default").execute_query("SELECT 1"), 2)
        checks["db"] = "ok"
    except Exception as exc:  # health must report, never raise
        checks["db"] = f"error: {type(exc).__name__}"
    try:
        await asyncio.wait_for(request.app[REDIS].ping(), 2)
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
        embedded = request.app.get(EMBEDDED_REDIS)
        if embedded is not None and embedded.state != "running":
            checks["redis"] += f" ({embedded.state})"
    healthy = all(v == "ok" for v in checks.values())
    return web.json_response(
        {"status": "ok" if healthy else "degraded", **checks}, status=200 if healthy else 503
    )


async def metrics_view(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


_API_OUTAGE = OutageLog(log, "http: redis unavailable")


@web.middleware
async def _metrics_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    route = request.match_info.route.resource
    name = route.canonical if route is not None else "unmatched"
    metrics = request.app[METRICS]
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except STORE_DOWN as exc:
        # Redis is down or restarting: say so (and once per interval in the log), the
        # caller may retry; a traceback per request helps nobody.
        status = 503
        _API_OUTAGE.report(exc)
        return web.json_response(
            {"error": "service_unavailable", "message": "服务暂时不可用，请稍后再试"}, status=503
        )
    finally:
        metrics.http.observe(name, str(status), time.perf_counter() - started)
