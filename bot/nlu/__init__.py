"""Understanding Chinese chat: normalisation, film catalog, slots, intent classifier."""
