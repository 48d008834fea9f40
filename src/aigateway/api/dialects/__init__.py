"""Other clients' APIs (OpenAI Responses, Anthropic Messages) served by translating to chat completions.

Each dialect is a request translator (its body -> a chat body, before `begin` sizes the hold)
and a response translator (a chat completion -> its answer; a stream transformer from chat
SSE events to its events). The call itself is the chat call: the same holds, billing,
failover and key checks (`api/call.py`, `api/unary.py`, `api/streaming.py`), never a copy.
"""
