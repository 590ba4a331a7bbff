"""What the bot says back: text with tappable choices, or a list of articles.

Handlers build these; the channel codecs turn them into WeChat or WeCom XML.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from html import escape


@dataclass(frozen=True, slots=True)
class Button:
    label: str
    send: str = ""  # the text sent back when tapped (defaults to the label)

    @property
    def payload(self) -> str:
        return self.send or self.label


@dataclass(frozen=True, slots=True)
class Article:
    title: str
    description: str = ""
    url: str = ""
    image: str = ""


@dataclass(frozen=True, slots=True)
class Reply:
    text: str = ""
    buttons: tuple[Button, ...] = ()
    articles: tuple[Article, ...] = ()

    @classmethod
    def say(cls, text: str, *buttons: Button | str) -> Reply:
        return cls(text=text, buttons=tuple(b if isinstance(b, Button) else Button(b) for b in buttons))

    @property
    def is_empty(self) -> bool:
        return not (self.text or self.articles)

    def render_wechat_text(self) -> str:
        """Buttons become WeChat's tappable menu links: a tap sends ``payload`` as the user."""
        if not self.buttons:
            return self.text
        links = [_menu_link(b, i) for i, b in enumerate(self.buttons, start=1)]
        return self.text + "\n\n" + "\n".join(links)

    def render_plain_text(self) -> str:
        """For clients without tappable links (WeCom text, terminals)."""
        if not self.buttons:
            return self.text
        options = "  ".join(f"【{b.payload}】" for b in self.buttons)
        return f"{self.text}\n\n直接回复：{options}"


@lru_cache(maxsize=4096)
def _menu_link(button: Button, menu_id: int) -> str:
    # Most replies offer the same few buttons: escape each once, not per message.
    return (
        f'<a href="weixin://bizmsgmenu?msgmenucontent={escape(button.payload)}'
        f'&msgmenuid={menu_id}">{escape(button.label)}</a>'
    )
