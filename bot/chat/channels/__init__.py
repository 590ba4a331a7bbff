"""Sans-I/O codecs for the WeChat and WeCom callback protocols.

Bytes and query parameters in, a typed :class:`Inbound` out (or a
:class:`CallbackRejected` that says which 4xx to answer); a reply in, the bytes
to answer out. No network, no Redis, no database: the web views do the I/O.
"""

from bot.chat.channels.inbound import Channel, Inbound
from bot.chat.channels.security import CallbackRejected

__all__ = ["CallbackRejected", "Channel", "Inbound"]
