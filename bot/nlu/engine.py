"""The NLU pipeline: normalise → intent (classifier, with role) → slots (grammar + film catalog).

One engine per process (the model is loaded once); the film catalog is the
live one, refreshed from its provider at most every ``catalog_ttl`` seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from datetime import date, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from bot.infra.clock import SHANGHAI, Clock
from bot.nlu import tokenizer
from bot.nlu.catalog import DEFAULT_FILMS, FilmCatalog, FilmEntry
from bot.nlu.classifier import IntentClassifier, load_or_train
from bot.nlu.slots import extract_slots
from bot.chat.router import Understanding

CatalogProvider = Callable[[], Awaitable[Iterable[FilmEntry]]]


class NluEngine:
    def __init__(
        self,
        classifier: IntentClassifier,
        clock: Clock,
        catalog: FilmCatalog | None = None,
        catalog_provider: CatalogProvider | None = None,
        catalog_ttl: float = 60.0,
    ) -> None:
        self.classifier = classifier
        self.clock = clock
        self.catalog = catalog or FilmCatalog(DEFAULT_FILMS)
        self.classifier.catalog = self.catalog
        # jieba's dictionary (~0.7 s, ~70 MB, once per process) loads in the
        # background; the first message that needs its words waits for it.
        tokenizer.warm_up()
        self.catalog_provider = catalog_provider
        self.catalog_ttl = catalog_ttl
        self._catalog_loaded = 0.0
        # Button taps send the same few texts over and over; slots depend only on the
        # text, the role, the local day and the catalog, so an answer can be reused.
        self._recent: OrderedDict[tuple[str, str, date, int], Understanding] = OrderedDict()
        self._recent_size = 4096

    @classmethod
    async def load(
        cls, clock: Clock, cache_dir: Path | None = None, **kwargs: Any
    ) -> NluEngine:
        classifier, _ = await asyncio.to_thread(load_or_train, cache_dir)
        return cls(classifier, clock, **kwargs)

    def set_catalog(self, catalog: FilmCatalog) -> None:
        self.catalog = catalog
        self.classifier.catalog = catalog
        self._recent.clear()

    async def _refresh_catalog(self) -> None:
        if self.catalog_provider is None:
            return
        now = time.monotonic()
        if now - self._catalog_loaded < self.catalog_ttl:
            return
        self._catalog_loaded = now
        films = list(await self.catalog_provider())
        if films:
            self.set_catalog(FilmCatalog(films))

    def parse(self, text: str, role: str = "audience", now: datetime | None = None) -> dict[str, Any]:
        """The contract of ``cinebot nlu parse``: text, intent, confidence, slots."""
        prediction = self.classifier.predict(text, role)
        slots = extract_slots(text, now or self.clock.now(), self.catalog)
        return {
            "text": text,
            "intent": prediction.intent,
            "confidence": round(float(prediction.confidence), 4),
            "slots": slots,
        }

    async def understand(self, text: str, role: str) -> Understanding:
        await self._refresh_catalog()
        now = self.clock.now()
        key = (text, role, now.astimezone(SHANGHAI).date(), id(self.catalog))
        hit = self._recent.get(key)
        if hit is not None:
            self._recent.move_to_end(key)
            return hit
        prediction = self.classifier.predict(text, role)
        understanding = Understanding(
            intent=prediction.intent,
            confidence=float(prediction.confidence),
            slots=MappingProxyType(extract_slots(text, now, self.catalog)),
            alternatives=prediction.alternatives,
        )
        self._recent[key] = understanding
        if len(self._recent) > self._recent_size:
            self._recent.popitem(last=False)
        return understanding
