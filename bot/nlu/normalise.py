"""Text normalisation shared by the film catalog, the slot grammar and the classifier.

Every component of the NLU works on the same normalised form, so a span found by
one (the film title) can be blanked out before another (counts, times) looks.
``normalise`` is idempotent: ``normalise(normalise(t)) == normalise(t)``.
"""

from __future__ import annotations

import re
import unicodedata

# NFKC already folds full-width ASCII (，！？：；（）～ and full-width digits and
# letters) to their half-width forms. What it leaves alone is mapped here, so the
# grammar sees one spelling per punctuation mark.
_PUNCT = str.maketrans(
    {
        "、": ",",
        "。": ".",
        "｡": ".",
        "〜": "~",
        "‐": "-",
        "‑": "-",
        "‒": "-",
        "–": "-",
        "—": "-",
        "―": "-",
        "−": "-",
        "“": '"',
        "”": '"',
        "„": '"',
        "‟": '"',
        "「": '"',
        "」": '"',
        "『": '"',
        "』": '"',
        "《": '"',
        "》": '"',
        "〈": '"',
        "〉": '"',
        "【": '"',
        "】": '"',
        "〔": '"',
        "〕": '"',
        "〖": '"',
        "〗": '"',
        "«": '"',
        "»": '"',
        "‘": "'",
        "’": "'",
        "‚": "'",
        "‛": "'",
        "・": "·",
        "•": "·",
        "‧": "·",
        # Invisible characters that chat clients paste in.
        "\u200b": None,
        "\u200c": None,
        "\u200d": None,
        "\u2060": None,
        "\ufeff": None,
    }
)
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """NFKC (full → half width), lower case, one spelling per punctuation mark,
    whitespace runs collapsed to one space and trimmed. CJK characters are kept."""
    if not text:
        return ""
    text = unicodedata.normalize("NFKC", text).lower().translate(_PUNCT)
    return _SPACE.sub(" ", text).strip()


def compact(text: str) -> str:
    """``normalise`` and then only the letters and digits (CJK included): the form
    titles and aliases are compared in."""
    return "".join(ch for ch in normalise(text) if ch.isalnum())
