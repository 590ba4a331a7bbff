"""Words of cinema chat: a jieba tokenizer with the live catalog in its dictionary.

Design
------

* **One jieba dictionary per process.** ``jieba.Tokenizer()`` loads ~500,000
  words: about 0.6–0.8 s and ~70 MB of RSS (measured: 0.7 s, 19 → 93 MiB). It is
  loaded once, lazily, under a lock, into a module-level *private*
  ``jieba.Tokenizer`` (never the global ``jieba.dt``, never ``enable_paddle()``).
  ``warm_up()`` loads it in a background thread (every ``NluEngine`` calls it;
  one thread at most), so a server does not wait for it: a message with an
  exact title never needs jieba, and one that needs it before the load is done
  waits for it, once. jieba keeps its own cache file in the system temp dir.
* **A cheap view per catalog.** ``CatalogTokenizer`` (``for_catalog(catalog)``,
  one per distinct list of films, so the engine's refreshes reuse it) holds one
  catalog's user words: its titles and aliases, the hall names and a small
  cinema vocabulary, each with a high frequency and a POS tag. Before it
  segments, it makes its words the active ones in the shared dictionary: the
  words of the previously active catalog that it lacks get their original
  frequency and tag back (0 when jieba never knew them, which keeps the prefix
  chain of longer words), and its own are added with ``add_word``. The first
  time a process sees a word costs a ``suggest_freq`` (~60 µs); later swaps cost
  ~10 µs a word (about 1 ms for the demo catalog's 91 words, 4 ms for 200 films).
  Swap and segmentation happen under one lock, so two catalogs in one process
  (several engines, a refreshed catalog) never see each other's words; a
  catalog with the same words (same fingerprint) swaps nothing.
* **POS tags** (jieba's ICTCLAS-style set, read by ``jieba.posseg`` and by
  ``CatalogTokenizer.tag``): films ``nz`` (other proper noun), halls ``ns``
  (a named place, here one inside the cinema), vocabulary ``v`` (改签, 退票) or
  ``n`` (取票码, 情侣座).
* **What jieba cannot do** it is not asked to: it splits at ``：``, ``，``, ``·``
  and spaces and is case-sensitive, so names are added in their normalised form
  (lower case, half width) and only when jieba can keep them as one token (the
  compact form, 沙丘第二部 for 沙丘：第二部, is added too). Finding a title in a
  message stays the catalog's own scan over normalised text (``FilmCatalog.match``).

The fuzzy fallback
------------------

``match_film`` runs only when the catalog's scan found nothing. It compares
token windows (runs of up to six whole tokens) with the catalog's names, so a
match always starts and ends at a word boundary:

* a sequel spelled another way: the window's last tokens are a part number
  (二, 第二部, 第2集, ii, two, part 2) and the tokens before it are the base of a
  sequel name with that number (沙丘 ii, dune two, 沙丘第二集 → 沙丘：第二部);
* a typo: one edit (substitution, insertion, deletion, adjacent swap) for names
  of 3–6 characters (4–6 in Latin letters), two for longer ones; never to a
  digit or Chinese numeral (window and name must have the same numerals); the
  first character kept for names under five characters; a window whose last
  character differs must be as long as the name (a cut-off name is too little to
  go on) and may not end in a place character (长津路 is a road, not 长津湖). A
  Chinese sequel base of two characters may take one edit when the part number
  is said (哪咤2 → 哪吒2).

Guards, so that common words never become films: a window may not contain a
dictionary word of two or more characters (长江, 飞机, 十面埋伏, 今天天气), a hall
or a vocabulary word, unless that word is part of some name in the catalog (满江
in 满江红) or a part number (第二部); a window the scan saw exactly and refused
(八百块, 长安街, 流浪地球1) is never taken; the span must pass the catalog's
context rules (``FilmCatalog.span_fits``); a part number followed by a count
(2张, two tickets) is a count, not a sequel.
"""

from __future__ import annotations

import logging
import time

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from bot.nlu.catalog import FilmCatalog, FilmEntry, fold_key, sequel_parts
from bot.nlu.normalise import normalise

if TYPE_CHECKING:  # jieba is imported when the dictionary is first needed
    import jieba

FILM_TAG = "nz"
HALL_TAG = "ns"
# The frequency catalog words get (the default dictionary's total is ~6e7): high
# enough to win over any split of the word, raised further when jieba suggests it.
USER_FREQ = 100_000

_CN_HALL_NUMBERS = "一 二 三 四 五 六 七 八 九 十".split()
HALL_NAMES: tuple[str, ...] = (
    *(f"{n}号厅" for n in range(1, 21)),
    *(f"{n}号厅" for n in _CN_HALL_NUMBERS),
    "IMAX厅", "巨幕厅", "中国巨幕厅", "杜比厅", "杜比影院", "激光厅", "VIP厅", "4DX厅",
)  # fmt: skip
CINEMA_VOCABULARY: tuple[tuple[str, str], ...] = (
    ("改签", "v"), ("退票", "v"), ("取票", "v"), ("购票", "v"), ("订票", "v"), ("选座", "v"),
    ("散场", "v"), ("开场", "v"), ("观影", "v"), ("退款", "v"),
    ("取票码", "n"), ("取票机", "n"), ("电影票", "n"), ("情侣座", "n"), ("座位", "n"),
    ("影厅", "n"), ("放映厅", "n"), ("场次", "n"), ("排片", "n"), ("巨幕", "n"),
    ("兑换券", "n"), ("会员卡", "n"), ("爆米花", "n"), ("3d眼镜", "n"), ("彩蛋", "n"),
    ("杜比", "nz"), ("杜比全景声", "nz"), ("imax", "nz"), ("4dx", "nz"),
)  # fmt: skip

# What jieba keeps together in one block (its ``re_han_default``): a word with any
# other character (：，· or a space) can never come out as one token.
_KEEPABLE = re.compile(r"[\u4E00-\u9FD5a-zA-Z0-9+#&._%\-]+")
_CN_PART = re.compile(r"第?\d{1,2}[部集季]?")  # a part number (folded): 第2部, 2, 2集
_PART_SUFFIX = re.compile(
    r"(?:第(?P<a>\d{1,2})[部集季]?|(?P<b>\d{1,2})[部集季]?|part(?P<c>\d{1,2}|[a-z]+)|(?P<d>[a-z]+))"
)
_NUMBER_WORDS = ("one two three four five six seven eight nine ten").split()
_ROMAN = ("i ii iii iv v vi vii viii ix x").split()
_WORD_VALUES = {w: n for n, w in enumerate(_NUMBER_WORDS, 1)} | {
    r: n for n, r in enumerate(_ROMAN, 1)
}
# Numerals no fuzzy edit may touch (after folding, single digits are ASCII).
_FIXED = frozenset("0123456789〇零两十百千万")
# After a part number these make it a count: 2张, two tickets.
_COUNT_AFTER = ("张", "位", "个人", "人", "ticket", "seat", "people", "person", "pax", "adult")
# A name whose last character is changed into one of these is a place.
_PLACE = frozenset("街路道巷区站城市镇村乡县省门寺桥楼场馆园")
_MAX_WINDOW_TOKENS = 6
_FOLD = str.maketrans("〇零一二三四五六七八九", "00123456789")  # as the catalog's keys

log = logging.getLogger(__name__)


def keepable(word: str) -> bool:
    """Whether jieba can give ``word`` back as a single token."""
    return _KEEPABLE.fullmatch(word) is not None


# --- the shared jieba dictionary ------------------------------------------------------


class _Shared:
    """The process's one ``jieba.Tokenizer`` and which catalog's words it holds."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.tokenizer: jieba.Tokenizer | None = None
        self.thread: threading.Thread | None = None
        self.active: str | None = None  # fingerprint of the words now added
        self.active_words: dict[str, tuple[int, str]] = {}
        # word -> (frequency, tag) it had before we first touched it (None: absent).
        self.original: dict[str, tuple[int | None, str | None]] = {}
        self.chosen: dict[str, int] = {}  # word -> the frequency we give it

    def get(self) -> jieba.Tokenizer:
        tokenizer = self.tokenizer
        if tokenizer is not None:
            return tokenizer
        with self.lock:
            if self.tokenizer is None:
                import jieba

                # jieba announces its dictionary loads on its own stderr handler at DEBUG;
                # our logs say when the tokenizer is ready.
                jieba.setLogLevel(logging.WARNING)

                started = time.perf_counter()
                tokenizer = jieba.Tokenizer()  # private: jieba.dt stays untouched
                tokenizer.initialize()
                self.tokenizer = tokenizer
                log.info(
                    "tokenizer ready",
                    extra={"seconds": round(time.perf_counter() - started, 2)},
                )
            return self.tokenizer

    def base_freq(self, word: str) -> int:
        """The frequency ``word`` has in jieba's own dictionary (0: not a word)."""
        assert self.tokenizer is not None
        if word in self.original:
            return self.original[word][0] or 0
        return self.tokenizer.FREQ.get(word) or 0

    def activate(self, fingerprint: str, words: Mapping[str, str]) -> None:
        """Make ``words`` (word -> tag) the user words of the dictionary, and only
        those. Call with ``lock`` held."""
        if self.active == fingerprint:
            return
        tk = self.get()
        freq, tags = tk.FREQ, tk.user_word_tag_tab
        for word in [w for w in self.active_words if w not in words]:
            old_freq, old_tag = self.original[word]
            restored = old_freq or 0  # 0 keeps the prefix chain of longer words intact
            tk.total += restored - freq.get(word, 0)
            freq[word] = restored
            if old_tag is None:
                tags.pop(word, None)
            else:
                tags[word] = old_tag
            del self.active_words[word]
        for word, tag in words.items():
            if word in self.active_words and self.active_words[word][1] == tag:
                continue
            if word not in self.original:
                self.original[word] = (freq.get(word), tags.get(word))
            if word in self.active_words:
                tags[word] = tag
                self.active_words[word] = (self.active_words[word][0], tag)
                continue
            # Never add a word with frequency 0: jieba's del_word also marks it
            # "force split" in module-global state shared with jieba.dt.
            wanted = self.chosen.get(word)
            if wanted is None:  # suggest_freq segments the word: worked out once a process
                wanted = max(USER_FREQ, self.base_freq(word), tk.suggest_freq(word, False))
                self.chosen[word] = wanted
            before = freq.get(word) or 0
            tk.add_word(word, wanted, tag)
            tk.total -= before  # add_word adds the new frequency without taking the old
            self.active_words[word] = (wanted, tag)
        self.active = fingerprint


_SHARED = _Shared()
_THREAD_LOCK = threading.Lock()


def shared_tokenizer() -> jieba.Tokenizer:
    """The process's ``jieba.Tokenizer``, loaded on first use (~0.6 s, ~60 MB)."""
    return _SHARED.get()


def warm_up(wait: bool = False) -> None:
    """Load the jieba dictionary now: in a background thread (the default; at most
    one is ever started) or, with ``wait``, before returning."""
    if _SHARED.tokenizer is not None:
        return
    if wait:
        _SHARED.get()
        return
    with _THREAD_LOCK:  # not _SHARED.lock: the loading thread holds that one
        if _SHARED.thread is None:
            _SHARED.thread = threading.Thread(target=_SHARED.get, name="jieba-init", daemon=True)
            _SHARED.thread.start()


def is_ready() -> bool:
    return _SHARED.tokenizer is not None


# --- one catalog's view -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Token:
    word: str
    start: int  # in the normalised text
    end: int


@dataclass(frozen=True, slots=True)
class _Name:
    key: str  # folded compact form
    title: str
    is_base: bool
    fixed: str  # its numerals, in order


@dataclass(frozen=True, slots=True)
class _Tok:
    start: int
    end: int
    key: str  # folded compact form ("" for spaces and punctuation)
    filler: bool  # a space or punctuation: inside a window, never at its ends
    blocks: bool  # a common word: no film window may contain it


class CatalogTokenizer:
    """jieba segmentation with one catalog's names, halls and cinema words."""

    def __init__(
        self,
        catalog: FilmCatalog,
        halls: Iterable[str] = HALL_NAMES,
        vocabulary: Iterable[tuple[str, str]] = CINEMA_VOCABULARY,
    ) -> None:
        self.catalog = catalog
        words: dict[str, str] = {}
        for word, tag in vocabulary:
            self._add(words, word, tag)
        for hall in halls:
            self._add(words, hall, HALL_TAG)
        self._cinema_words = frozenset(words)
        for name in catalog.names():
            self._add(words, name, FILM_TAG)
        self.words: Mapping[str, str] = MappingProxyType(words)
        digest = hashlib.sha1()
        for word, tag in sorted(words.items()):
            digest.update(f"{word}\t{tag}\n".encode())
        self.fingerprint = digest.hexdigest()
        self._index: _FuzzyIndex | None = None

    @staticmethod
    def _add(words: dict[str, str], name: str, tag: str) -> None:
        norm = normalise(name)
        compact = "".join(ch for ch in norm if ch.isalnum())
        for form in (norm, compact):
            if form and keepable(form):
                # A film keeps its tag over a vocabulary word of the same spelling.
                words[form] = tag if tag == FILM_TAG else words.get(form, tag)

    def tag(self, word: str) -> str | None:
        """The POS tag this tokenizer gives ``word`` (normalised), if it is a user word."""
        return self.words.get(word)

    def tokenize(self, text: str) -> list[Token]:
        """The tokens of ``normalise(text)``, with their spans in it."""
        return self.tokenize_normalised(normalise(text))

    def tokenize_normalised(self, norm: str) -> list[Token]:
        with _SHARED.lock:
            _SHARED.activate(self.fingerprint, self.words)
            tk = _SHARED.get()
            return [Token(w, s, e) for w, s, e in tk.tokenize(norm, HMM=False)]

    def cut(self, text: str) -> list[str]:
        """The words of ``normalise(text)``, spaces dropped."""
        return [t.word for t in self.tokenize(text) if not t.word.isspace()]

    # --- the fuzzy film fallback ------------------------------------------------------

    def match_film(self, norm: str) -> tuple[str, int, int] | None:
        """(title, start, end) of a film named loosely in normalised ``norm``; for
        when ``catalog.match_normalised`` found nothing. See the module docstring."""
        if not norm or not len(self.catalog):
            return None
        index = self._index or self._build_index()
        if index.anchors.isdisjoint(norm.translate(_FOLD)):
            return None  # no character any name could start with: no need for jieba
        tokens = self._tokens(norm, index)
        best: tuple[int, int, int, str, int, int] | None = None  # cost, -len, start, ...
        for segment in _segments(tokens):
            for i, first in enumerate(segment):
                if first.filler:
                    continue
                key = ""
                for j in range(i, min(len(segment), i + _MAX_WINDOW_TOKENS)):
                    tok = segment[j]
                    key += tok.key
                    if len(key) > index.longest + 2:
                        break
                    if tok.filler or len(key) < 2:
                        continue
                    start, end = first.start, tok.end
                    for cost, title, is_base in self._candidates(index, segment, i, j, key, norm):
                        candidate = (cost, -(end - start), start, title, end, int(is_base))
                        if best is not None and candidate >= best:
                            continue
                        if not self.catalog.span_fits(norm, start, end):
                            continue
                        if is_base and self.catalog.other_part_follows(norm, end):
                            continue
                        best = candidate
        if best is None:
            return None
        return best[3], best[2], best[4]

    def _candidates(
        self, index: _FuzzyIndex, segment: list[_Tok], i: int, j: int, key: str, norm: str
    ) -> Iterable[tuple[int, str, bool]]:
        if key in index.exact:
            return  # the scan saw this spelling and refused it here (八百块, 流浪地球1)
        # A sequel spelled another way: base tokens, then a part number.
        suffix = ""
        for p in range(j, i, -1):
            suffix = segment[p].key + suffix
            if len(suffix) > 8:
                break
            base = key[: len(key) - len(suffix)]
            if segment[p].filler or not base:
                continue
            n = _part_number(suffix)
            if n is None or _count_follows(norm, segment[j].end):
                continue
            fixed = _numerals(base)
            for name_base, title in index.sequels.get(n, ()):
                if fixed != _numerals(name_base):
                    continue  # 流浪地球2|2 is not 流浪地球 + 2
                cost = _within(base, name_base, _sequel_edits(name_base))
                if cost is not None:
                    yield cost, title, False
        # A typo: the window against names of about its length.
        seen: set[str] = set()
        for ch in key[:2]:
            for name in index.by_char.get(ch, ()):
                if name.key in seen:
                    continue
                seen.add(name.key)
                edits = _plain_edits(name.key)
                if not edits or abs(len(key) - len(name.key)) > edits:
                    continue
                if len(name.key) < 5 and key[0] != name.key[0]:
                    continue
                if key[-1] != name.key[-1] and (len(key) != len(name.key) or key[-1] in _PLACE):
                    continue  # a cut-off name, or a place: 长津路 is a road, not 长津湖
                if _numerals(key) != name.fixed:
                    continue
                cost = _within(key, name.key, edits)
                if cost is not None:
                    yield cost, name.title, name.is_base

    def _build_index(self) -> _FuzzyIndex:
        names = [
            _Name(key, title, is_base, _numerals(key))
            for key, title, is_base in self.catalog.name_keys()
        ]
        sequels: dict[int, list[tuple[str, str]]] = {}
        for name in names:
            parts = None if name.is_base else sequel_parts(name.key)
            if parts is not None and (parts[0], name.title) not in sequels.get(parts[1], ()):
                sequels.setdefault(parts[1], []).append((parts[0], name.title))
        by_char: dict[str, list[_Name]] = {}
        for name in names:
            for ch in dict.fromkeys(name.key[:2]):
                by_char.setdefault(ch, []).append(name)
        anchors = {name.key[0] for name in names} | {
            name.key[1] for name in names if len(name.key) >= 5
        }
        # Every piece of every name (as typed, not folded): a window may hold these.
        pieces: set[str] = set()
        for name in self.catalog.names():
            compact = "".join(ch for ch in normalise(name) if ch.isalnum())
            for a in range(len(compact)):
                for b in range(a + 2, len(compact) + 1):
                    pieces.add(compact[a:b])
        self._index = _FuzzyIndex(
            exact=frozenset(n.key for n in names),
            sequels=sequels,
            by_char=by_char,
            anchors=frozenset(anchors),
            longest=max((len(n.key) for n in names), default=0),
            pieces=frozenset(pieces),
            typo_pieces=frozenset(
                pattern for piece in pieces if 3 <= len(piece) <= 8 for pattern in _one_off(piece)
            ),
        )
        return self._index

    def _tokens(self, norm: str, index: _FuzzyIndex) -> list[_Tok]:
        breaks = self.catalog.breaks
        out: list[_Tok] = []
        with _SHARED.lock:
            _SHARED.activate(self.fingerprint, self.words)
            tk = _SHARED.get()
            for word, start, end in tk.tokenize(norm, HMM=False):
                key = fold_key(word)
                if not key:
                    out.append(_Tok(start, end, "", True, any(ch in breaks for ch in word)))
                    continue
                common = len(key) >= 2 and (
                    _SHARED.base_freq(word) > 0 or word in self._cinema_words
                )
                blocks = common and _CN_PART.fullmatch(key) is None and not index.holds(word)
                out.append(_Tok(start, end, key, False, blocks))
        return out


@dataclass(frozen=True, slots=True)
class _FuzzyIndex:
    exact: frozenset[str]
    sequels: dict[int, list[tuple[str, str]]]  # part number -> (base, title)
    by_char: dict[str, list[_Name]]
    anchors: frozenset[str]
    longest: int
    pieces: frozenset[str]
    typo_pieces: frozenset[str]  # pieces of 3+ characters, each with one blanked

    def holds(self, word: str) -> bool:
        """Whether a dictionary word may sit in a film window: it is a piece of some
        name (满江 of 满江红), or, from three characters on, one typo away from one
        (碟中碟 for 碟中谍)."""
        typed = "".join(ch for ch in word if ch.isalnum())
        if typed in self.pieces:
            return True
        if len(typed) < 3:
            return False
        return any(pattern in self.typo_pieces for pattern in _one_off(typed))


def _segments(tokens: list[_Tok]) -> Iterable[list[_Tok]]:
    """Runs of tokens a film window may span: cut at common words and breaks."""
    run: list[_Tok] = []
    for tok in tokens:
        if tok.blocks:
            if run:
                yield run
            run = []
        else:
            run.append(tok)
    if run:
        yield run


def _one_off(word: str) -> Iterable[str]:
    """``word`` with each character in turn replaced by a NUL: two words one
    substitution apart share one of these."""
    return (word[:i] + "\0" + word[i + 1 :] for i in range(len(word)))


def _numerals(key: str) -> str:
    return "".join(c for c in key if c in _FIXED)


def _part_number(suffix: str) -> int | None:
    m = _PART_SUFFIX.fullmatch(suffix)
    if m is None:
        return None
    raw = m.group("a") or m.group("b") or m.group("c") or m.group("d")
    n = int(raw) if raw.isdigit() else _WORD_VALUES.get(raw)
    return n or None


def _count_follows(norm: str, end: int) -> bool:
    return norm[end:].lstrip().startswith(_COUNT_AFTER)


def _plain_edits(key: str) -> int:
    """Edits allowed to a whole name: none under 3 characters (under 4 in Latin
    letters, where jieba knows no common words to guard with: hey is not Her)."""
    if len(key) < (4 if key.isascii() else 3):
        return 0
    return 1 if len(key) <= 6 else 2


def _sequel_edits(base: str) -> int:
    """Edits allowed to a sequel's base when the part number is said too."""
    if len(base) < (4 if base.isascii() else 2):
        return 0
    return 1 if len(base) <= 6 else 2


def _within(a: str, b: str, limit: int) -> int | None:
    """The edit distance of ``a`` and ``b`` (adjacent swaps count one), if at most
    ``limit``; for short names (under 5) the first character may not change."""
    if a == b:
        return 0
    if limit == 0 or abs(len(a) - len(b)) > limit:
        return None
    if len(b) < 5 and (not a or a[0] != b[0]):
        return None
    # Optimal string alignment distance, rows kept small (names are short).
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for k in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[k - 1] else 1
            cur[k] = min(prev[k] + 1, cur[k - 1] + 1, prev[k - 1] + cost)
            if i > 1 and k > 1 and a[i - 1] == b[k - 2] and a[i - 2] == b[k - 1]:
                cur[k] = min(cur[k], prev2[k - 2] + 1)
        if min(cur) > limit:
            return None
        prev2, prev = prev, cur
    return prev[-1] if prev[-1] <= limit else None


# --- the tokenizer of a catalog ------------------------------------------------------

# Views by catalog content: the engine builds a new FilmCatalog at every refresh,
# usually with the same films; their view (words, fuzzy index) is reused.
_VIEWS: OrderedDict[tuple[FilmEntry, ...], CatalogTokenizer] = OrderedDict()
_VIEWS_LOCK = threading.Lock()
_VIEWS_KEPT = 8


def for_catalog(catalog: FilmCatalog) -> CatalogTokenizer:
    """The tokenizer view of ``catalog``: one per distinct list of films and aliases."""
    key = catalog.entries()
    with _VIEWS_LOCK:
        view = _VIEWS.get(key)
        if view is None:
            view = _VIEWS[key] = CatalogTokenizer(catalog)
            while len(_VIEWS) > _VIEWS_KEPT:
                _VIEWS.popitem(last=False)
        else:
            _VIEWS.move_to_end(key)
        return view


def fuzzy_film(norm: str, catalog: FilmCatalog) -> tuple[str, int, int] | None:
    """The fuzzy fallback of slot extraction: ``for_catalog(catalog).match_film``."""
    if not len(catalog):
        return None
    return for_catalog(catalog).match_film(norm)
