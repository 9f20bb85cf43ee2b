"""A small client of systemd's manager on the system bus: transient units, their state, stop.

Built on dbus-fast (pure Python, asyncio-native, optional C speedups), so the daemon starts
and watches step units on its own event loop without a thread or a `systemd-run` child.
PropertiesChanged signals wake a waiter; each wake re-reads the unit's state, and a
periodic re-read covers a signal lost to a reconnect, so waiting needs no signal to be exact.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from ...core.errors import OrchestratorError

SYSTEMD = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
UNIT = "org.freedesktop.systemd1.Unit"
PROPERTIES = "org.freedesktop.DBus.Properties"
ENDED = ("inactive", "failed")


class SystemdBusError(OrchestratorError):
    """systemd answered a call with an error; `name` is the D-Bus error name."""

    def __init__(self, message: str, name: str = ""):
        super().__init__(message)
        self.name = name


def unit_path(unit: str) -> str:
    """The object path systemd gives a unit (sd_bus_path_encode of its name)."""
    label = "".join(c if c.isascii() and c.isalnum() else f"_{ord(c):02x}" for c in unit)
    return f"{MANAGER_PATH}/unit/{label or '_'}"


class SystemdBus:
    """One connection to the system bus, shared by every step unit of a daemon."""

    def __init__(self, bus: MessageBus):
        self._bus = bus
        self._wakers: dict[str, set[asyncio.Event]] = {}
        bus.add_message_handler(self._on_message)

    @classmethod
    async def connect(cls) -> SystemdBus:
        try:
            bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        except (OSError, ValueError) as exc:
            raise SystemdBusError(f"cannot connect to the system bus: {exc}") from None
        client = cls(bus)
        await client._call(MANAGER_PATH, MANAGER, "Subscribe")  # else no PropertiesChanged
        return client

    async def close(self) -> None:
        self._bus.disconnect()
        with contextlib.suppress(Exception):
            await self._bus.wait_for_disconnect()

    async def start_transient(self, unit: str, properties: Iterable[tuple[str, str, Any]]) -> str:
        """StartTransientUnit(unit, "fail", properties); returns the start job's path."""
        body = [unit, "fail", [[name, Variant(sig, value)] for name, sig, value in properties], []]
        reply = await self._call(MANAGER_PATH, MANAGER, "StartTransientUnit",
                                 "ssa(sv)a(sa(sv))", body)
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
        await self._call("/org/freedesktop/DBus", "org.freedesktop.DBus", "AddMatch", "s", [rule],
                         destination="org.freedesktop.DBus")
        try:
            while await self.running(unit):
                woken.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), recheck)
        finally:
            self._wakers[path].discard(woken)
            if not self._wakers[path]:
                del self._wakers[path]
            if self._bus.connected:
                with contextlib.suppress(SystemdBusError):
                    await self._call("/org/freedesktop/DBus", "org.freedesktop.DBus",
                                     "RemoveMatch", "s", [rule], destination="org.freedesktop.DBus")

    def _on_message(self, message: Message) -> None:
        if message.message_type == MessageType.SIGNAL and message.path in self._wakers:
            for event in self._wakers[message.path]:
                event.set()

    async def _call(self, path: str, interface: str, member: str, signature: str = "",
                    body: list[Any] | None = None, *, destination: str = SYSTEMD) -> list[Any]:
        try:
            reply = await self._bus.call(Message(destination=destination, path=path,
                                                 interface=interface, member=member,
                                                 signature=signature, body=body or []))
        except (OSError, EOFError) as exc:
            raise SystemdBusError(f"{member}: the system bus connection failed: {exc}") from None
        if reply.message_type == MessageType.ERROR:
            detail = reply.body[0] if reply.body else reply.error_name
            raise SystemdBusError(f"{member}: {detail}", reply.error_name or "")
        return reply.body
