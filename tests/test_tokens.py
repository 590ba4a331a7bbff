"""Signed links and sessions: forged, foreign-purpose and expired tokens are refused."""

from __future__ import annotations

import pytest

from bot.infra.tokens import BadToken, sign, verify

KEY = "k" * 32


def test_a_token_gives_back_its_value_until_it_expires() -> None:
    token = sign(KEY, "pay", "CB2026-1", expires_at=1000)
    assert verify(KEY, "pay", token, now=999) == "CB2026-1"
    with pytest.raises(BadToken, match="expired"):
        verify(KEY, "pay", token, now=1000)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature
        lambda t: t.replace(".", "x", 1),  # structure
        lambda t: "pay." + t.split(".", 1)[1].replace(t.split(".")[1], "T3RoZXI"),  # value swapped
        lambda t: t.rsplit(".", 2)[0] + ".9999999999." + t.rsplit(".", 1)[1],  # expiry extended
    ],
)
def test_a_changed_token_is_refused(mutate) -> None:
    token = sign(KEY, "pay", "CB2026-1", expires_at=1000)
    with pytest.raises(BadToken):
        verify(KEY, "pay", mutate(token), now=1)


def test_a_token_for_one_purpose_or_key_does_not_pass_for_another() -> None:
    token = sign(KEY, "mp", "openid-1", expires_at=1000)
    with pytest.raises(BadToken, match="purpose"):
        verify(KEY, "staff", token, now=1)
    with pytest.raises(BadToken, match="signature"):
        verify("other" * 8, "mp", token, now=1)
