"""Talking to WeChat and WeCom: the API clients and access tokens, the outbox sender, WeChat
Pay v3 and its sandbox, the local stand-in for their HTTP APIs, the terminal chat client and
the printable QR sheet."""
