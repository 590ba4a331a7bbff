"""The chat engine: channels (verify, decrypt, parse), callbacks and their dedup, the router,
dialog state and the reply types handlers return."""
