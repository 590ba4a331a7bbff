"""The film catalog: which canonical title a message names, and where.

Matching works on the *compacted* text (normalised, letters and digits only) so
"Dune: Part Two", "dune part two" and "DUNE：PART TWO" are one name, and with
single Chinese digits folded to ASCII (二 → 2) so 沙丘二 ~ 沙丘2 and 第二部 ~ 第2部.
The fold maps one character to one character, so every compact position still
points back into the normalised text and the span returned is exact there.

How a name is found:

1. exact: titles, aliases and their sequel spellings (沙丘2 ~ 沙丘第2部 ~
   dune part 2 ~ dune part two); the longest name found wins, then the earliest;
2. only if nothing exact: the base name of a sequel *title* (流浪地球 → 流浪地球2),
   since a cinema's list is what is showing now — unless another part is named
   (流浪地球1, 沙丘第一部);
3. fuzzy: one edit (substitution, insertion or deletion before the last
   character, adjacent swap) for names of at least 4 characters, anchored on the
   first character, never an edit to a digit or numeral (流浪地球1 is not
   流浪地球2). It replaces an exact match only when it covers more (热辣滚汤 is
   热辣滚烫, not the alias 热辣 plus 滚汤).

Everywhere a name may not sit inside a longer Latin word or number (dune2x,
流浪地球22), may not run across a sentence break (沙丘，2张) unless names in the
catalog use that mark, and a name made only of numerals (八百) may not be followed
by a measure word (八百块). A name of two characters is not a place (长安街).

Slot extraction falls back, when all of this finds nothing, on jieba's words
(``bot.nlu.tokenizer``: typos in short names, other spellings of a part number).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass

from bot.nlu.normalise import normalise


@dataclass(frozen=True)
class FilmEntry:
    title: str
    aliases: tuple[str, ...] = ()


DEFAULT_FILMS: tuple[FilmEntry, ...] = (
    FilmEntry("沙丘：第二部", ("沙丘2", "沙丘二", "沙丘第二部", "Dune2", "Dune: Part Two")),
    FilmEntry("哪吒之魔童闹海", ("哪吒2", "哪吒二", "魔童闹海", "哪吒闹海")),
    FilmEntry("流浪地球2", ("流浪地球二", "流浪地球第二部", "流浪2")),
    FilmEntry("热辣滚烫", ("热辣",)),
    FilmEntry("八佰", ("八百",)),
    FilmEntry("飞驰人生2", ("飞驰人生二", "飞驰2")),
    FilmEntry("长安三万里", ("长安3万里", "长安")),
)

# One character to one character, so compact positions map back to the text.
_FOLD = str.maketrans("〇零一二三四五六七八九", "00123456789")
_CN_NUMERALS = frozenset("〇零一二两三四五六七八九十百千万")
_CN_DIGITS = frozenset("〇零一二三四五六七八九")  # what a sequel number is spelled with
# Characters that end a phrase: a name never spans one ("沙丘，2张" is not 沙丘2).
_BREAKS = frozenset(',.;!?~"|/\\()[]{}<>')
# After a name made only of numerals (八百), these make it a quantity.
_MEASURES = frozenset("块元米人张个多万千岁斤分次年天号位点里")
# After a short name (长安), these make it a place.
_PLACE = frozenset("街路区站城市镇村门寺桥")
_FUZZY_MIN = 4

_NUMBER_WORDS = dict(
    enumerate(["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"], 1)
)
_ROMAN = dict(enumerate(["i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x"], 1))
_WORD_VALUES = {w: n for n, w in _NUMBER_WORDS.items()} | {r: n for n, r in _ROMAN.items()}
_SEQUEL = re.compile(
    r"^(?P<base>.*\D)(?:第(?P<a>\d{1,2})[部集季]|part(?P<b>\d{1,2}|[a-z]+)|(?P<c>\d{1,2}))$"
)


def _key(name: str) -> str:
    """The compact, digit-folded form a name is compared in."""
    return fold_key(normalise(name))


def fold_key(norm: str) -> str:
    """``_key`` of text that is already normalised: letters and digits only, single
    Chinese digits folded to ASCII (one character for one)."""
    return "".join(ch for ch in norm if ch.isalnum()).translate(_FOLD)


def _sequel(key: str) -> tuple[str, int] | None:
    """(base, number) when a key ends in a sequel number: 沙丘第2部, dune2, duneparttwo."""
    m = _SEQUEL.match(key)
    if m is None:
        return None
    raw = m.group("a") or m.group("b") or m.group("c")
    n = int(raw) if raw.isdigit() else _WORD_VALUES.get(raw)
    if not n or len(m.group("base")) < 2:
        return None
    return m.group("base"), n


def sequel_parts(key: str) -> tuple[str, int] | None:
    """(base, part number) of a name's key that ends in a sequel number, else None."""
    return _sequel(key)


def _sequel_spellings(key: str) -> list[str]:
    found = _sequel(key)
    if found is None:
        return []
    base, n = found
    out = [f"{base}{n}", f"{base}第{n}部"]
    if base[-1].isascii() and base[-1].isalpha():
        out += [f"{base}part{n}"]
        if n in _NUMBER_WORDS:
            word, roman = _NUMBER_WORDS[n], _ROMAN[n]
            out += [f"{base}part{word}", f"{base}part{roman}", f"{base}{roman}"]
    return out


def _is_latin(ch: str) -> bool:
    return ch.isascii() and ch.isalpha()


def _is_digit(ch: str) -> bool:
    return ch.isascii() and ch.isdigit()


def _fixed(ch: str) -> bool:
    """A character no fuzzy edit may touch: a digit or a Chinese numeral."""
    return _is_digit(ch) or ch in _CN_NUMERALS


def _one_edit(window: str, key: str) -> bool:
    """One edit turns ``window`` into ``key``: a substitution, an adjacent swap, or
    an insertion or deletion before the last character (a cut-off name, 热辣滚,
    is too little to go on). The edit touches no digit or Chinese numeral."""
    lw, lk = len(window), len(key)
    if lw == lk:
        diffs = [i for i in range(lk) if window[i] != key[i]]
        if len(diffs) == 1:
            i = diffs[0]
            return not (_fixed(window[i]) or _fixed(key[i]))
        if len(diffs) == 2:
            i, j = diffs
            return (
                j == i + 1
                and window[i] == key[j]
                and window[j] == key[i]
                and not (_fixed(key[i]) or _fixed(key[j]))
            )
        return False
    if abs(lw - lk) != 1:
        return False
    longer, shorter = (window, key) if lw > lk else (key, window)
    i = 0
    while i < len(shorter) and longer[i] == shorter[i]:
        i += 1
    if i >= len(shorter):
        return False
    return longer[i + 1 :] == shorter[i:] and not _fixed(longer[i])


def _count_follows(norm: str, end: int) -> bool:
    """Whether one digit and a ticket/people unit follow: 飞驰人生22张 is 飞驰人生2 and
    2张, 沙丘二两张 is 沙丘二 and 两张, 八百四张 is 八百 and 四张."""
    return (
        end + 1 < len(norm)
        and (_is_digit(norm[end]) or norm[end] in _CN_DIGITS or norm[end] == "两")
        and norm[end + 1] in "张位人个"
    )


def _names_other_part(norm: str, end: int) -> bool:
    """Whether a bare sequel base is followed by a part number (流浪地球1, 沙丘 第一部):
    then the message names another film of the series, not the one showing. A
    quantity (沙丘三张, 沙丘两张) is not a part number."""
    rest = norm[end : end + 6].lstrip().removeprefix("第")
    run = 0
    while run < len(rest) and (_is_digit(rest[run]) or rest[run] in _CN_NUMERALS):
        run += 1
    if run == 0 or rest[0] == "两":
        return False
    return not (run < len(rest) and rest[run] in _MEASURES)


class FilmCatalog:
    def __init__(self, films: Iterable[FilmEntry]) -> None:
        self._films: list[FilmEntry] = []
        seen: set[str] = set()
        for film in films:
            title = film.title.strip()
            if title and title not in seen:
                seen.add(title)
                aliases = tuple(a.strip() for a in film.aliases if a.strip())
                self._films.append(FilmEntry(title, aliases))
        # key -> title. Earlier tiers never give way to later ones: a title beats an
        # alias, an alias beats a generated spelling, and the first film keeps a key.
        self._exact: dict[str, str] = {}
        titles_keys = [(f.title, _key(f.title)) for f in self._films]
        alias_keys = [(f.title, _key(a)) for f in self._films for a in f.aliases]
        for title, key in titles_keys + alias_keys:
            if key:
                self._exact.setdefault(key, title)
        for title, key in titles_keys + alias_keys:
            for spelling in _sequel_spellings(key):
                self._exact.setdefault(spelling, title)
        self._bases: dict[str, str] = {}
        for title, key in titles_keys:
            found = _sequel(key)
            if found and found[0] not in self._exact:
                self._bases.setdefault(found[0], title)
        # Punctuation some name uses (Mr. Bean) does not break a name.
        used = {ch for f in self._films for n in (f.title, *f.aliases) for ch in normalise(n)}
        self._breaks = _BREAKS - used
        # Candidates by first character, longest first, for a scan that only looks
        # at positions where some name could start.
        self._by_first = self._index(self._exact)
        self._bases_by_first = self._index(self._bases)
        self._fuzzy_by_first: dict[str, list[tuple[str, str, bool]]] = {}
        for keys, is_base in ((self._exact, False), (self._bases, True)):
            for key, title in keys.items():
                if len(key) >= _FUZZY_MIN:
                    self._fuzzy_by_first.setdefault(key[0], []).append((key, title, is_base))
        for entries in self._fuzzy_by_first.values():
            entries.sort(key=lambda e: -len(e[0]))

    @staticmethod
    def _index(keys: dict[str, str]) -> dict[str, list[tuple[str, str]]]:
        index: dict[str, list[tuple[str, str]]] = {}
        for key, title in keys.items():
            index.setdefault(key[0], []).append((key, title))
        for entries in index.values():
            entries.sort(key=lambda kt: -len(kt[0]))
        return index

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> FilmCatalog:
        """The ``--films FILE`` format: ``canonical title|alias|alias...`` a line;
        blank lines and ``#`` comment lines are skipped."""
        films = []
        for line in lines:
            line = line.strip().lstrip("\ufeff").strip()
            if not line or line.startswith("#"):
                continue
            parts = [p.strip() for p in line.split("|")]
            if parts[0]:
                films.append(FilmEntry(parts[0], tuple(p for p in parts[1:] if p)))
        return cls(films)

    def titles(self) -> list[str]:
        return [f.title for f in self._films]

    def user_dict_words(self) -> list[str]:
        """Titles and aliases as one token each (normalised, no spaces or punctuation),
        for ``jieba.add_word``, so the segmenter never splits 长安三万里 into 长安 / 三万 / 里."""
        words: list[str] = []
        for film in self._films:
            for name in (film.title, *film.aliases):
                word = "".join(ch for ch in normalise(name) if ch.isalnum())
                if word and word not in words:
                    words.append(word)
        return words

    def __len__(self) -> int:
        return len(self._films)

    def entries(self) -> tuple[FilmEntry, ...]:
        """The films, cleaned up, in order: two catalogs with equal entries match alike."""
        return tuple(self._films)

    def names(self) -> list[str]:
        """Every title and alias as written, titles first (for the tokenizer's dictionary)."""
        return [name for film in self._films for name in (film.title, *film.aliases)]

    def name_keys(self) -> list[tuple[str, str, bool]]:
        """(key, canonical title, is_base) for every name the exact tiers know:
        titles, aliases, their sequel spellings, and bare sequel bases (is_base)."""
        return [(k, t, False) for k, t in self._exact.items()] + [
            (k, t, True) for k, t in self._bases.items()
        ]

    @property
    def breaks(self) -> frozenset[str]:
        """The punctuation a name may not run across in this catalog."""
        return frozenset(self._breaks)

    def span_fits(self, norm: str, start: int, end: int) -> bool:
        """Whether ``norm[start:end]`` may stand as a name of its own: the context
        rules of ``match`` (not inside a longer Latin word or number, no sentence
        break, 八百块 is a price, 长安街 a place)."""
        positions = [i for i, ch in enumerate(norm) if ch.isalnum()]
        cs, ce = bisect_left(positions, start), bisect_left(positions, end)
        return ce > cs and self._fits(norm, positions, cs, ce)

    def other_part_follows(self, norm: str, end: int) -> bool:
        """Whether a bare sequel base ending at ``end`` is followed by another part's
        number (流浪地球1): then it does not name the film that is showing."""
        return _names_other_part(norm, end)

    def match(self, text: str) -> tuple[str, int, int] | None:
        """(canonical title, start, end) of the film named in ``normalise(text)``, or None."""
        return self.match_normalised(normalise(text))

    def match_normalised(self, norm: str) -> tuple[str, int, int] | None:
        """``match`` for text that is already normalised (the span indexes ``norm``)."""
        if not self._films or not norm:
            return None
        positions = [i for i, ch in enumerate(norm) if ch.isalnum()]
        folded = "".join(norm[i] for i in positions).translate(_FOLD)
        found = self._scan_exact(norm, folded, positions, self._by_first)
        if found is None:
            found = self._scan_exact(norm, folded, positions, self._bases_by_first, base=True)
        # A typo in a long name can hide behind a short alias inside it (热辣滚汤
        # holds 热辣): the fuzzy match wins when it covers more.
        fuzzy = self._scan_fuzzy(norm, folded, positions)
        if fuzzy is not None and (found is None or fuzzy[2] - fuzzy[1] > found[2] - found[1]):
            found = fuzzy
        if found is None:
            return None
        title, cs, ce = found
        return title, positions[cs], positions[ce - 1] + 1

    def _scan_exact(
        self,
        norm: str,
        folded: str,
        positions: list[int],
        index: dict[str, list[tuple[str, str]]],
        base: bool = False,
    ) -> tuple[str, int, int] | None:
        best: tuple[str, int, int] | None = None
        for i, ch in enumerate(folded):
            for key, title in index.get(ch, ()):
                if best is not None and len(key) <= best[2] - best[1]:
                    break  # longest first: nothing later at this position is longer
                end = i + len(key)
                if not folded.startswith(key, i) or not self._fits(norm, positions, i, end):
                    continue
                if base and _names_other_part(norm, positions[end - 1] + 1):
                    continue
                best = (title, i, end)
                break
        return best

    def _scan_fuzzy(
        self, norm: str, folded: str, positions: list[int]
    ) -> tuple[str, int, int] | None:
        best: tuple[str, int, int] | None = None
        best_len = 0
        n = len(folded)
        for i, ch in enumerate(folded):
            for key, title, is_base in self._fuzzy_by_first.get(ch, ()):
                size = len(key)
                if size <= best_len:
                    break
                for width in (size, size - 1, size + 1):
                    end = i + width
                    if end > n:
                        continue
                    window = folded[i:end]
                    # An exact window was already judged (and refused) by the exact tiers.
                    if window == key or not _one_edit(window, key):
                        continue
                    if not self._fits(norm, positions, i, end):
                        continue
                    if is_base and _names_other_part(norm, positions[end - 1] + 1):
                        continue
                    best, best_len = (title, i, end), size
                    break
                if best is not None and best_len == size:
                    break
        return best

    def _fits(self, norm: str, positions: list[int], cs: int, ce: int) -> bool:
        """Whether compact span [cs, ce) stands as a name of its own in ``norm``."""
        start, end = positions[cs], positions[ce - 1] + 1
        span = norm[start:end]
        if any(ch in self._breaks for ch in span):
            return False
        first, last = span[0], span[-1]
        before = norm[start - 1] if start > 0 else ""
        after = norm[end] if end < len(norm) else ""
        # A Latin name is a word of its own: not dune2 in dune2x or xdune2.
        if any(_is_latin(ch) for ch in span) and (
            (before.isascii() and before.isalnum()) or (after.isascii() and after.isalnum())
        ):
            return False
        if before and _is_digit(first) and _is_digit(before):
            return False
        counted = _count_follows(norm, end)
        if (
            after
            and not counted
            and (
                (_is_digit(last) and _is_digit(after))
                or (last in _CN_DIGITS and after in _CN_NUMERALS)
            )
        ):
            return False
        if (
            after
            and all(_is_digit(ch) or ch in _CN_NUMERALS for ch in span)
            and (
                after in _MEASURES or ((after in _CN_NUMERALS or _is_digit(after)) and not counted)
            )
        ):
            return False
        return not (after and len(span) <= 2 and after in _PLACE)
