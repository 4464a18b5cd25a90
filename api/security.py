"""API keys: where they come from and how a request's key is checked.

Keys come from RETAIL_API_KEYS (comma-separated) and/or RETAIL_API_KEYS_FILE (a
mounted secret, one key per line; blank lines and lines starting with # are
skipped). Every configured key is compared in constant time, so timing tells an
attacker nothing about how close a guess was. Turning authentication off takes
RETAIL_API_AUTH_DISABLED=true and is logged as a warning at start-up. The key file is
read again at every poll (RETAIL_RELOAD_INTERVAL_SECONDS), so a rotated secret takes
effect without a restart.
"""

from __future__ import annotations

import hmac
import logging

from fastapi import HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader

from api.settings import ApiSettings

API_KEY_HEADER = "X-API-Key"
MIN_KEY_LENGTH = 16

log = logging.getLogger("retail.api.security")
api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="one of the service's API keys")


class ApiKeys:
    def __init__(self, keys: list[str]):
        self._keys = [key.encode() for key in keys]

    def accepts(self, presented: str) -> bool:
        candidate = presented.encode()
        found = False
        for key in self._keys:  # no early exit: the time taken does not depend on which key matched
            found |= hmac.compare_digest(key, candidate)
        return found


def load_api_keys(settings: ApiSettings) -> ApiKeys | None:
    """The configured keys, or None when authentication is explicitly turned off."""
    if settings.api_auth_disabled:
        log.warning("API key authentication is turned off (RETAIL_API_AUTH_DISABLED); any caller can predict")
        return None
    keys = []
    if settings.api_keys is not None:
        keys += [k.strip() for k in settings.api_keys.get_secret_value().split(",") if k.strip()]
    if settings.api_keys_file is not None:
        try:
            text = settings.api_keys_file.read_text()
        except OSError as exc:
            raise RuntimeError(f"cannot read RETAIL_API_KEYS_FILE {settings.api_keys_file}: {exc.strerror}") from exc
        keys += [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not keys:
        raise RuntimeError(
            "no API keys configured: set RETAIL_API_KEYS or RETAIL_API_KEYS_FILE, "
            "or RETAIL_API_AUTH_DISABLED=true to serve without authentication"
        )
    short = sum(len(k) < MIN_KEY_LENGTH for k in keys)
    if short:
        raise RuntimeError(f"{short} API key(s) shorter than {MIN_KEY_LENGTH} characters; use long random keys")
    return ApiKeys(keys)


def reread_api_keys(settings: ApiSettings, current: ApiKeys | None) -> ApiKeys | None:
    """The keys again when they come from a file (a rotated secret); the current ones if that fails."""
    if settings.api_auth_disabled or settings.api_keys_file is None:
        return current
    try:
        return load_api_keys(settings)
    except RuntimeError as exc:
        log.warning("API keys not re-read, the previous keys stay valid", extra={"error": str(exc)})
        return current


async def require_api_key(request: Request, presented: str | None = Security(api_key_header)) -> None:
    """Dependency of the prediction, model and admin routes: 401 without a valid key (`async def`: it does not
    block, and a plain `def` dependency would run in the thread pool on every request)."""
    keys: ApiKeys | None = request.app.state.api_keys
    if keys is None:
        return
    if not presented or not keys.accepts(presented):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=f"missing or invalid API key: send a valid key in the {API_KEY_HEADER} header",
            headers={"WWW-Authenticate": "ApiKey"},
        )
