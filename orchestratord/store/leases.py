"""A run's lease: which process drives it. One process at a time drives a run: its driver
holds a lease (owner = host:pid:process start time) that it renews; a lease whose owner
died on this host is free at once, any other only when it expires.

Taking the lease also reads the run's cancel flag, in the same transaction, where the
driver used to read it next: one round trip less, the flag cannot be older than the
lease, and a cancel requested later still reaches the driver (Engine.cancel, or the
lease keeper's poll). A run's end event releases the lease in its own transaction
(RELEASE, Store.set_run_status): a crash between two commits used to leave a terminal
run leased to a dead owner, free only once the owner was seen dead.
"""

from __future__ import annotations

import sqlite3
import time

from ..core.errors import LeaseHeld, RunNotFound
from ..core.processes import alive
from .connection import Connection

RELEASE = ("UPDATE runs SET lease_owner = NULL, lease_expires = NULL "
           "WHERE id = ? AND lease_owner = ?")


async def acquire(conn: Connection, run_id: str, owner: str, ttl: float) -> bool:
    """Take the run for owner, or raise LeaseHeld naming who drives it. Returns whether
    a cancel is requested: the new owner honours it before launching anything."""
    def take(conn: sqlite3.Connection) -> bool:
        row = conn.execute(
            "SELECT lease_owner, lease_expires, cancel_requested FROM runs WHERE id = ?",
            (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(f"no run '{run_id}'")
        holder, expires = row["lease_owner"], row["lease_expires"]
        now = time.time()
        if holder != owner and live(holder, expires, now):
            raise LeaseHeld(f"run {run_id} is being driven by {holder} "
                            f"(lease for {expires - now:.0f} s more)")
        # A cancel requested before stays: the new owner honours it (request_cancel).
        conn.execute("UPDATE runs SET lease_owner = ?, lease_expires = ? WHERE id = ?",
                     (owner, now + ttl, run_id))
        return bool(row["cancel_requested"])
    return bool(await conn.transaction(take))


async def driven(conn: Connection, run_id: str) -> bool:
    """Whether a live process holds the run's lease (drives it now)."""
    rows = await conn.execute_fetchall(
        "SELECT lease_owner, lease_expires FROM runs WHERE id = ?", (run_id,))
    return bool(rows) and live(rows[0]["lease_owner"], rows[0]["lease_expires"], time.time())


async def renew(conn: Connection, run_id: str, owner: str, ttl: float) -> bool:
    """Extend the lease; False if it was lost to another process."""
    async with conn.write:
        cursor = await conn.execute(
            "UPDATE runs SET lease_expires = ? WHERE id = ? AND lease_owner = ?",
            (time.time() + ttl, run_id, owner))
    return cursor.rowcount == 1


async def release(conn: Connection, run_id: str, owner: str) -> None:
    async with conn.write:
        await conn.execute(RELEASE, (run_id, owner))


def live(holder: str | None, expires: float | None, now: float) -> bool:
    """A lease holds until it expires, or at once when its owner died on this host."""
    return (holder is not None and expires is not None and expires > now
            and alive(holder) is not False)
