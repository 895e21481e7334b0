"""Token access control for every route, the page and the streams included.

`EventSource` cannot send headers, so a browser authenticates once by opening
`/?token=...`: the app answers with an HttpOnly cookie (a keyed digest of the token,
never the token itself) and redirects to `/` so the token leaves the address bar.
Scripts use `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE_NAME = "datatrace_session"


def cookie_value(token: str) -> str:
    """The cookie that stands for `token`; changing the token invalidates it."""
    return hmac.new(token.encode(), b"datatrace-dashboard-cookie", hashlib.sha256).hexdigest()


class TokenAuthMiddleware:
    """Refuse (401) every HTTP request that carries neither the bearer token nor its cookie."""

    def __init__(self, app: ASGIApp, *, token: str) -> None:
        self.app = app
        self._token = token.encode()
        self._cookie = cookie_value(token).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        if self._bearer_ok(headers.get("authorization")) or self._cookie_ok(headers.get("cookie")):
            await self.app(scope, receive, send)
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        offered = (query.get("token") or [""])[0].encode()
        if scope["path"] == "/" and offered and hmac.compare_digest(offered, self._token):
            await self._set_cookie(scope, send)
            return
        await self._refuse(send)

    def _bearer_ok(self, value: bytes | None) -> bool:
        if not value or not value.lower().startswith(b"bearer "):
            return False
        return hmac.compare_digest(value[7:].strip(), self._token)

    def _cookie_ok(self, value: bytes | None) -> bool:
        if not value:
            return False
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(value.decode("latin-1"))
        except Exception:  # a malformed Cookie header is simply not a credential
            return False
        morsel = jar.get(COOKIE_NAME)
        return morsel is not None and hmac.compare_digest(morsel.value.encode(), self._cookie)

    async def _set_cookie(self, scope: Scope, send: Send) -> None:
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        cookie = f"{COOKIE_NAME}={self._cookie.decode()}; Path=/; HttpOnly; SameSite=Strict{secure}"
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [
                    (b"location", b"/"),
                    (b"set-cookie", cookie.encode()),
                    (b"cache-control", b"no-store"),
                    (b"content-length", b"0"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    @staticmethod
    async def _refuse(send: Send) -> None:
        body = json.dumps(
            {
                "detail": "authentication required: send 'Authorization: Bearer <token>', "
                "or open /?token=<token> in the browser"
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", b"Bearer"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
