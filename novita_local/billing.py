"""The account's balance, counted in images: what `BILLING_BALANCE_NOT_ENOUGH` is about.

Novita bills per image generated; this server counts a balance in images instead of money. Each
accepted task spends its `image_num`; a submit the balance cannot pay is refused with 400
BILLING_BALANCE_NOT_ENOUGH, which then answers every further submit of the account (until it is
topped up, which a local server never is). A restart keeps what was spent: it is the account's
money, not the server's memory.
"""

from __future__ import annotations

import threading


class Balance:
    """Images the account can still pay for; `None` means unlimited."""

    def __init__(self, images: int | None) -> None:
        self._lock = threading.Lock()
        self._left = images
        self._spent = 0

    def affords(self, images: int) -> bool:
        with self._lock:
            return self._left is None or images <= self._left

    def spend(self, images: int) -> None:
        """Charge an accepted task (the caller checked `affords` first)."""
        with self._lock:
            self._spent += images
            if self._left is not None:
                self._left = max(0, self._left - images)

    @property
    def left(self) -> int | None:
        with self._lock:
            return self._left

    @property
    def spent(self) -> int:
        with self._lock:
            return self._spent
