"""The security headers every page of the customer portal and the operator console carries.

One place, so the two sites cannot drift apart: a strict Content-Security-Policy (each site
passes its own), no framing (click-jacking), no MIME sniffing, no referrer to other sites,
and a browsing context of its own. `setdefault`: a handler that set one on purpose keeps it.
"""

from __future__ import annotations

from multidict import CIMultiDict


def set_page_headers(headers: CIMultiDict[str], csp: str) -> None:
    headers.setdefault("Content-Security-Policy", csp)
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
