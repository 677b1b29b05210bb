"""HMAC-signed, expiring result URLs, refused like a cloud bucket refuses a bad presigned URL.

A URL is `{base}/_local/files/{task_id}/{index}.{ext}?expires={unix}&signature={hex}` where the
signature is HMAC-SHA256 over `"{task_id}/{index}.{ext}\\n{expires}"`. Changing any part of the
path or the expiry invalidates it, and the key never leaves the server, so URLs cannot be forged.
Files are looked up by task id and index in the task store, never by joining a path.

Refusals follow S3's presigned-URL errors (XML bodies, like Novita's real result bucket): a URL
without its query -> 403 AccessDenied, a bad signature -> 403 SignatureDoesNotMatch, an expired
one -> 403 AccessDenied "Request has expired", an unknown object -> 404 NoSuchKey.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import Enum
from xml.sax.saxutils import escape

FILES_PREFIX = "/_local/files"


class Refusal(Enum):
    MISSING = ("AccessDenied", 403, "Query-string authentication requires expires and signature")
    SIGNATURE = (
        "SignatureDoesNotMatch",
        403,
        "The request signature we calculated does not match the signature you provided",
    )
    EXPIRED = ("AccessDenied", 403, "Request has expired")
    NOT_FOUND = ("NoSuchKey", 404, "The specified key does not exist.")

    @property
    def code(self) -> str:
        return self.value[0]

    @property
    def status(self) -> int:
        return self.value[1]

    @property
    def message(self) -> str:
        return self.value[2]

    def xml(self, resource: str) -> str:
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{self.code}</Code><Message>{escape(self.message)}</Message>"
            f"<Resource>{escape(resource)}</Resource></Error>"
        )


@dataclass(frozen=True)
class UrlSigner:
    key: bytes

    @classmethod
    def random(cls) -> UrlSigner:
        return cls(secrets.token_bytes(32))

    def signature(self, task_id: str, name: str, expires: int) -> str:
        message = f"{task_id}/{name}\n{expires}".encode()
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()

    def url(self, base_url: str, task_id: str, index: int, ext: str, expires: int) -> str:
        name = f"{index}.{ext}"
        signature = self.signature(task_id, name, expires)
        return (
            f"{base_url.rstrip('/')}{FILES_PREFIX}/{task_id}/{name}"
            f"?expires={expires}&signature={signature}"
        )

    def check(
        self, task_id: str, name: str, expires: str | None, signature: str | None, now: float
    ) -> Refusal | None:
        """Why this URL is refused, or None when it is valid right now."""
        if not expires or not signature:
            return Refusal.MISSING
        if not expires.isascii() or not expires.isdigit() or len(expires) > 12:
            return Refusal.SIGNATURE
        expected = self.signature(task_id, name, int(expires))
        if not signature.isascii() or not hmac.compare_digest(expected, signature.lower()):
            return Refusal.SIGNATURE
        if now > int(expires):
            return Refusal.EXPIRED
        return None
