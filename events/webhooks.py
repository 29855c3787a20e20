"""Standard Webhooks signatures (https://www.standardwebhooks.com), verified before anything of
the body is read (pure): `webhook-signature` holds one or more `v1,BASE64` (space-separated:
several while a key rotates), each an HMAC-SHA256, keyed with the source's secret, of
`{webhook-id}.{webhook-timestamp}.{raw body}`; the timestamp must be within the tolerance of
now (a replay later is refused), and comparisons are constant-time."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

TOLERANCE_S = 300
SECRET_PREFIX = "whsec_"


class BadSignature(ValueError):
    """Why a delivery is not believed, said so that the sender can fix it (never the
    expected signature)."""


def secret_key(secret: str) -> bytes:
    """The key of a `whsec_BASE64` secret (the prefix is optional); ValueError otherwise."""
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ followed by base64 (24 to 64 bytes)"
                         ) from None
    if not 24 <= len(key) <= 64:
        raise ValueError(f"a webhook secret's key is 24 to 64 bytes, this one {len(key)}")
    return key


def sign(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,BASE64` signature of a delivery (what a sender sends; the tests sign with it)."""
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def verify(keys: list[bytes], webhook_id: str | None, timestamp: str | None,
           signatures: str | None, body: bytes, now: float,
           tolerance_s: float = TOLERANCE_S) -> int:
    """The delivery's timestamp when one of `keys` signed it within the tolerance; else
    BadSignature saying which header is missing or wrong."""
    if not webhook_id or not timestamp or not signatures:
        missing = [name for name, value in (("webhook-id", webhook_id),
                                            ("webhook-timestamp", timestamp),
                                            ("webhook-signature", signatures)) if not value]
        raise BadSignature(f"missing {', '.join(missing)}: sign deliveries as Standard "
                           "Webhooks do")
    if not timestamp.isdecimal():
        raise BadSignature("webhook-timestamp must be whole seconds since the epoch")
    at = int(timestamp)
    if abs(now - at) > tolerance_s:
        raise BadSignature(f"webhook-timestamp is {now - at:+.0f} s from now, beyond the "
                           f"tolerance of {tolerance_s:g} s: a stale or replayed delivery, or "
                           "a sender's clock that is off")
    offered = [s.split(",", 1)[1] for s in signatures.split() if s.startswith("v1,")]
    if not offered:
        raise BadSignature("webhook-signature has no v1 signature (space-separated "
                           "'v1,BASE64' values)")
    for key in keys:
        expected = sign(key, webhook_id, at, body).split(",", 1)[1].encode()
        if any(hmac.compare_digest(expected, candidate.encode()) for candidate in offered):
            return at
    raise BadSignature("no webhook-signature matches this source's secrets (signed with "
                       "another secret, or the body or headers changed on the way)")
