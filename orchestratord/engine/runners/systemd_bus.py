"""A small client of systemd's manager on the system bus: transient units, their state, stop.

Built on dbus-fast (pure Python, asyncio-native, optional C speedups), so the daemon starts
and watches step units on its own event loop without a thread or a `systemd-run` child.
PropertiesChanged signals wake a waiter; each wake re-reads the unit's state, and a
periodic re-read covers a signal lost to a reconnect, so waiting needs no signal to be exact.

The connection outlives a restart of the bus (`systemctl restart dbus`): step units keep
running under PID 1 meanwhile, so a call that finds the bus or systemd on it gone
reconnects, subscribes again, re-adds its match rules and is made again, with backoff,
until `reconnect_for` seconds have passed; only then does it raise BusLost. Every call here
is safe to repeat, StartTransientUnit included (start_transient says why).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

import tenacity
from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from ...core.errors import OrchestratorError

log = logging.getLogger("orchestratord.systemd_bus")

SYSTEMD = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
UNIT = "org.freedesktop.systemd1.Unit"
PROPERTIES = "org.freedesktop.DBus.Properties"
DBUS, DBUS_PATH = "org.freedesktop.DBus", "/org/freedesktop/DBus"
ENDED = ("inactive", "failed")
# Errors that mean systemd is not on the bus (yet): a restarted bus answers these until PID 1
# has reconnected to it; NoReply and TimedOut when a call went unanswered meanwhile.
ABSENT = {f"org.freedesktop.DBus.Error.{n}" for n in (
    "ServiceUnknown", "NameHasNoOwner", "NoReply", "TimedOut", "Disconnected")}


class SystemdBusError(OrchestratorError):
    """systemd answered a call with an error; `name` is the D-Bus error name.

    `maybe_done` is True when an earlier try of the same call was lost with the bus after
    it may have reached systemd.
    """

    def __init__(self, message: str, name: str = "", *, maybe_done: bool = False):
        super().__init__(message)
        self.name = name
        self.maybe_done = maybe_done


class BusLost(SystemdBusError):
    """The system bus, or systemd on it, is gone (and, from a call, stayed gone too long)."""


def unit_path(unit: str) -> str:
    """The object path systemd gives a unit (sd_bus_path_encode of its name)."""
    label = "".join(c if c.isascii() and c.isalnum() else f"_{ord(c):02x}" for c in unit)
    return f"{MANAGER_PATH}/unit/{label or '_'}"


class SystemdBus:
    """One connection to the system bus, shared by every step unit of a daemon, and
    replaced by a new one when the bus goes away."""

    def __init__(self, *, reconnect_for: float = 60.0):
        self.reconnect_for = reconnect_for
        self._bus: MessageBus | None = None
        self._lost_at: float | None = None  # monotonic time the connection was lost
        self._reconnect = asyncio.Lock()
        self._rules: collections.Counter[str] = collections.Counter()
        self._wakers: dict[str, set[asyncio.Event]] = {}
        self._watcher: asyncio.Task | None = None

    @classmethod
    async def connect(cls, *, reconnect_for: float = 60.0) -> SystemdBus:
        client = cls(reconnect_for=reconnect_for)
        try:
            await client._open()
        except BusLost as exc:
            raise SystemdBusError(f"cannot connect to systemd on the system bus: {exc}",
                                  exc.name) from None
        return client

    async def close(self) -> None:
        bus, self._bus = self._bus, None
        if self._watcher is not None:
            self._watcher.cancel()
        if bus is not None:
            bus.disconnect()
            with contextlib.suppress(Exception):
                await bus.wait_for_disconnect()

    async def start_transient(self, unit: str, properties: Iterable[tuple[str, str, Any]]) -> str:
        """StartTransientUnit(unit, "fail", properties); returns the start job's path ("" if
        the start went through on a connection lost before its answer).

        Repeating it is safe: a unit name is used once (run, step and attempt), so UnitExists
        after a try lost with the bus means that try started it.
        """
        body = [unit, "fail", [[name, Variant(sig, value)] for name, sig, value in properties], []]
        try:
            reply = await self._call(MANAGER_PATH, MANAGER, "StartTransientUnit",
                                     "ssa(sv)a(sa(sv))", body)
        except SystemdBusError as exc:
            if exc.maybe_done and exc.name.endswith(".UnitExists"):
                return ""
            raise
        return reply[0]

    async def service_of(self, pid: int) -> str | None:
        """The name of the service unit process pid runs in; None if not in a service."""
        try:
            [path] = await self._call(MANAGER_PATH, MANAGER, "GetUnitByPID", "u", [pid])
        except SystemdBusError as exc:
            if exc.name.endswith(".NoUnitForPID"):
                return None
            raise
        [name] = await self._call(path, PROPERTIES, "Get", "ss", [UNIT, "Id"])
        return name.value if name.value.endswith(".service") else None

    async def stop(self, unit: str) -> None:
        """Queue a stop job (the unit's whole cgroup is killed); a unit gone already is fine."""
        try:
            await self._call(MANAGER_PATH, MANAGER, "StopUnit", "ss", [unit, "replace"])
        except SystemdBusError as exc:
            if not exc.name.endswith(".NoSuchUnit"):
                raise

    async def state(self, unit: str) -> tuple[str, int]:
        """(ActiveState, id of the job queued for it or 0); an unknown unit is inactive."""
        path = unit_path(unit)
        active = await self._call(path, PROPERTIES, "Get", "ss", [UNIT, "ActiveState"])
        job = await self._call(path, PROPERTIES, "Get", "ss", [UNIT, "Job"])
        return active[0].value, job[0].value[0]

    async def running(self, unit: str) -> bool:
        """True while the unit is active, starting or stopping, or has a job queued."""
        active, job = await self.state(unit)
        return active not in ENDED or job != 0

    async def wait_ended(self, unit: str, *, recheck: float = 2.0) -> None:
        """Return once the unit is inactive or failed with no job queued (or unknown)."""
        path = unit_path(unit)
        woken = asyncio.Event()
        self._wakers.setdefault(path, set()).add(woken)
        rule = f"type='signal',sender='{SYSTEMD}',path='{path}',interface='{PROPERTIES}'"
        self._rules[rule] += 1
        try:
            await self._call(DBUS_PATH, DBUS, "AddMatch", "s", [rule], destination=DBUS)
            while await self.running(unit):
                woken.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), recheck)
        finally:
            self._wakers[path].discard(woken)
            if not self._wakers[path]:
                del self._wakers[path]
            self._rules[rule] -= 1
            if not self._rules[rule]:
                del self._rules[rule]
            if self._bus is not None and self._bus.connected:  # else gone with the connection
                with contextlib.suppress(SystemdBusError):
                    await self._call_once(self._bus, DBUS_PATH, DBUS, "RemoveMatch", "s", [rule],
                                          destination=DBUS)

    def _on_message(self, message: Message) -> None:
        if message.message_type == MessageType.SIGNAL and message.path in self._wakers:
            for event in self._wakers[message.path]:
                event.set()

    # -- the connection -----------------------------------------------------------------

    async def _open(self) -> MessageBus:
        """A new connection, subscribed to systemd's signals, with every match rule in use."""
        try:
            bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        except (OSError, ValueError, EOFError) as exc:
            raise BusLost(f"cannot connect to the system bus: {exc}") from None
        try:
            bus.add_message_handler(self._on_message)
            await self._call_once(bus, MANAGER_PATH, MANAGER, "Subscribe")  # for signals
            for rule in self._rules:
                await self._call_once(bus, DBUS_PATH, DBUS, "AddMatch", "s", [rule],
                                      destination=DBUS)
        except SystemdBusError:
            bus.disconnect()
            raise
        self._bus = bus
        self._watcher = asyncio.create_task(self._watch(bus), name="systemd bus watcher")
        return bus

    async def _watch(self, bus: MessageBus) -> None:
        """Notice a lost connection at once: wake every waiter, whose next call reconnects."""
        with contextlib.suppress(Exception):
            await bus.wait_for_disconnect()
        if self._bus is bus:  # not closed on purpose
            self._lost(bus, "the connection closed")
            for events in self._wakers.values():
                for event in events:
                    event.set()

    def _lost(self, bus: MessageBus, why: str) -> None:
        if self._bus is bus and self._lost_at is None:
            self._lost_at = time.monotonic()
            log.warning("lost the system bus (%s); step units run on under systemd; "
                        "reconnecting for up to %g s", why, self.reconnect_for)

    async def _connection(self, lost: MessageBus | None) -> MessageBus:
        """The current connection; a new one if `lost` (the one a call failed on) is it."""
        async with self._reconnect:
            bus = self._bus
            if bus is not None and bus is not lost and bus.connected:
                return bus
            if bus is not None:
                self._lost(bus, "it stopped answering")
                bus.disconnect()
            bus = await self._open()
            if self._lost_at is not None:
                log.warning("regained the system bus after %.1f s",
                            time.monotonic() - self._lost_at)
                self._lost_at = None
            return bus

    async def _call(self, path: str, interface: str, member: str, signature: str = "",
                    body: list[Any] | None = None, *, destination: str = SYSTEMD) -> list[Any]:
        """A call, made again on a new connection while the bus or systemd is gone."""
        lost: MessageBus | None = None
        maybe_done = False
        try:
            async for attempt in tenacity.AsyncRetrying(
                    stop=tenacity.stop_after_delay(self.reconnect_for),
                    wait=tenacity.wait_exponential(multiplier=0.05, max=2.0),
                    retry=tenacity.retry_if_exception_type(BusLost), reraise=True):
                with attempt:
                    bus = await self._connection(lost)
                    lost = bus
                    try:
                        reply = await self._call_once(bus, path, interface, member, signature,
                                                      body, destination=destination)
                    except BusLost:
                        maybe_done = True
                        raise
                    except SystemdBusError as exc:
                        exc.maybe_done = maybe_done
                        raise
                    lost = None
                    return reply
        except BusLost as exc:
            raise BusLost(f"{member}: no connection to systemd on the system bus for "
                          f"{self.reconnect_for:g} s: {exc}", exc.name) from None
        raise AssertionError("unreachable: tenacity returns or raises")

    async def _call_once(self, bus: MessageBus, path: str, interface: str, member: str,
                         signature: str = "", body: list[Any] | None = None, *,
                         destination: str = SYSTEMD) -> list[Any]:
        if not bus.connected:
            raise BusLost(f"{member}: not connected to the system bus")
        try:
            reply = await bus.call(Message(destination=destination, path=path,
                                           interface=interface, member=member,
                                           signature=signature, body=body or []))
        except (OSError, EOFError) as exc:
            raise BusLost(f"{member}: the system bus connection failed: {exc}") from None
        if reply.message_type == MessageType.ERROR:
            detail = reply.body[0] if reply.body else reply.error_name
            error = BusLost if reply.error_name in ABSENT else SystemdBusError
            raise error(f"{member}: {detail}", reply.error_name or "")
        return reply.body
