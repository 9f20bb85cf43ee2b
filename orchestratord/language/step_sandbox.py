"""The sandbox of a command step's systemd unit, in systemd's own property names.

A sandbox is a mapping of unit properties as an administrator writes them in a unit file
(`ProtectSystem: strict`, `MemoryMax: 512M`, `CPUQuota: 50%`, `PrivateNetwork: true`).
Three levels are merged, each key of a later level replacing the earlier one's:
the settings default (`step_sandbox.default`), the skill (`step_sandbox.skills.<name>`)
and the action (`sandbox:` in actions.yaml). Only the properties below are known; each
has the D-Bus type StartTransientUnit expects, and `to_dbus` converts the unit-file
spelling into it, so a typo or a bad value is a configuration error at load time, not a
failed step at run time.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# What a step gets when nothing else is said: no privilege, no write access outside its
# workspace, no kernel or device access, its own /tmp; the network stays reachable
# (actions that need none say `PrivateNetwork: true`). The step runs as the daemon's user
# (root on a host) so that every step of a run can write the run's workspace, but in its own
# user namespace and with no capabilities; `DynamicUser: true` is there for actions that
# need no workspace.
DEFAULT: dict[str, Any] = {
    "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": True,
    "PrivateDevices": True, "PrivateUsers": True, "NoNewPrivileges": True,
    "ProtectKernelTunables": True, "ProtectKernelModules": True, "ProtectKernelLogs": True,
    "ProtectControlGroups": True, "ProtectClock": True, "ProtectHostname": True,
    "ProtectProc": "invisible", "ProcSubset": "pid", "RestrictNamespaces": True,
    "RestrictRealtime": True, "RestrictSUIDSGID": True, "LockPersonality": True,
    "MemoryDenyWriteExecute": True, "CapabilityBoundingSet": [], "AmbientCapabilities": [],
    "SystemCallArchitectures": ["native"],
    "SystemCallFilter": ["@system-service", "~@privileged @resources"],
    "SystemCallErrorNumber": "EPERM", "RestrictAddressFamilies": ["AF_UNIX", "AF_INET", "AF_INET6"],
    "UMask": "0077", "TasksMax": 512,
}

# linux/capability.h, in order: a capability's number is its index.
CAPABILITIES = (
    "CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_FSETID CAP_KILL CAP_SETGID "
    "CAP_SETUID CAP_SETPCAP CAP_LINUX_IMMUTABLE CAP_NET_BIND_SERVICE CAP_NET_BROADCAST "
    "CAP_NET_ADMIN CAP_NET_RAW CAP_IPC_LOCK CAP_IPC_OWNER CAP_SYS_MODULE CAP_SYS_RAWIO "
    "CAP_SYS_CHROOT CAP_SYS_PTRACE CAP_SYS_PACCT CAP_SYS_ADMIN CAP_SYS_BOOT CAP_SYS_NICE "
    "CAP_SYS_RESOURCE CAP_SYS_TIME CAP_SYS_TTY_CONFIG CAP_MKNOD CAP_LEASE CAP_AUDIT_WRITE "
    "CAP_AUDIT_CONTROL CAP_SETFCAP CAP_MAC_OVERRIDE CAP_MAC_ADMIN CAP_SYSLOG CAP_WAKE_ALARM "
    "CAP_BLOCK_SUSPEND CAP_AUDIT_READ CAP_PERFMON CAP_BPF CAP_CHECKPOINT_RESTORE").split()
UINT64_MAX = 2 ** 64 - 1
SIZE_UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("yes", "true", "on", "1"):
        return True
    if str(value).lower() in ("no", "false", "off", "0"):
        return False
    raise ValueError(f"expected a boolean, got {value!r}")


def _str(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not isinstance(value, (str, int)):
        raise ValueError(f"expected a string, got {value!r}")
    return str(value)


def _strings(value: Any) -> list[str]:
    items = value.split() if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ValueError(f"expected a list of strings, got {value!r}")
    return items


def _limit(value: Any) -> int:
    """A size or count as systemd writes it: 512M, 2G, 100, infinity."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    text = str(value).strip()
    if text == "infinity":
        return UINT64_MAX
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)", text)
    if not match:
        raise ValueError(f"expected a size such as 512M, 2G or infinity, got {value!r}")
    return int(float(match.group(1)) * SIZE_UNITS[match.group(2)])


def _cpu_quota(value: Any) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)%", str(value).strip())
    if not match:
        raise ValueError(f"expected a percentage such as 50% or 200%, got {value!r}")
    return int(float(match.group(1)) * 10_000)  # µs of CPU time per second


def _capabilities(value: Any) -> int:
    mask = 0
    for name in _strings(value):
        if name.upper() not in CAPABILITIES:
            raise ValueError(f"unknown capability {name!r}")
        mask |= 1 << CAPABILITIES.index(name.upper())
    return mask


def _filter(value: Any) -> tuple[bool, list[str]]:
    """A SystemCallFilter= or RestrictAddressFamilies= list: "~" first makes it a deny list."""
    items = _strings(value)
    if items == ["none"]:
        return True, []
    deny = bool(items) and items[0].startswith("~")
    if deny:
        items = [items[0][1:], *items[1:]]
    return not deny, [i for i in items if i]


def _filters(value: Any) -> list[tuple[bool, list[str]]]:
    """SystemCallFilter=: one assignment per item, as unit-file lines, applied in order."""
    lines = [value] if isinstance(value, str) else value
    if not isinstance(lines, list):
        raise ValueError(f"expected a list of SystemCallFilter= lines, got {value!r}")
    return [_filter(line) for line in lines]


def _families(value: Any) -> tuple[bool, list[str]]:
    allow, items = _filter(value)
    for family in items:
        if not (family.startswith("AF_") and hasattr(socket, family)):
            raise ValueError(f"unknown address family {family!r}")
    return allow, items


def _addresses(value: Any) -> list[tuple[int, bytes, int]]:
    out = []
    for item in _strings(value):
        names = {"any": ["0.0.0.0/0", "::/0"], "localhost": ["127.0.0.0/8", "::1/128"]}
        for text in names.get(item, [item]):
            try:
                net = ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise ValueError(
                    f"expected an address prefix, any or localhost, got {item!r}") from None
            family = socket.AF_INET if net.version == 4 else socket.AF_INET6
            out.append((int(family), net.network_address.packed, net.prefixlen))
    return out


def _namespaces(value: Any) -> int:
    # RestrictNamespaces=yes allows none (0); no allows all. Lists are not offered.
    return 0 if _bool(value) else UINT64_MAX


def _umask(value: Any) -> int:
    try:
        return int(value, 8) if isinstance(value, str) else int(value)
    except ValueError:
        raise ValueError(f"expected an octal umask such as 0077, got {value!r}") from None


def _errno(value: Any) -> int:
    number = getattr(errno, str(value), None)
    if not isinstance(number, int):
        raise ValueError(f"unknown errno name {value!r}")
    return number


def _choice(*allowed: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        text = _str(value)
        if text not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got {value!r}")
        return text
    return convert


# unit-file name -> (D-Bus property name, D-Bus signature, converter)
PROPERTIES: dict[str, tuple[str, str, Callable[[Any], Any]]] = {
    **{name: (name, "b", _bool) for name in (
        "DynamicUser", "PrivateTmp", "PrivateDevices", "PrivateNetwork", "PrivateUsers",
        "PrivateMounts", "PrivateIPC", "NoNewPrivileges", "ProtectKernelTunables",
        "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock",
        "ProtectHostname", "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality",
        "MemoryDenyWriteExecute", "RemoveIPC")},
    "User": ("User", "s", _str), "Group": ("Group", "s", _str),
    "ProtectSystem": ("ProtectSystem", "s", _choice("strict", "full", "yes", "no")),
    "ProtectHome": ("ProtectHome", "s", _choice("yes", "read-only", "tmpfs", "no")),
    "ProtectProc": ("ProtectProc", "s", _choice("invisible", "ptraceable", "noaccess", "default")),
    "ProcSubset": ("ProcSubset", "s", _choice("pid", "all")),
    "DevicePolicy": ("DevicePolicy", "s", _choice("auto", "closed", "strict")),
    **{name: (name, "as", _strings) for name in (
        "ReadWritePaths", "ReadOnlyPaths", "InaccessiblePaths", "SupplementaryGroups",
        "SystemCallArchitectures")},
    "MemoryMax": ("MemoryMax", "t", _limit), "MemoryHigh": ("MemoryHigh", "t", _limit),
    "MemorySwapMax": ("MemorySwapMax", "t", _limit), "TasksMax": ("TasksMax", "t", _limit),
    "CPUQuota": ("CPUQuotaPerSecUSec", "t", _cpu_quota),
    "CapabilityBoundingSet": ("CapabilityBoundingSet", "t", _capabilities),
    "AmbientCapabilities": ("AmbientCapabilities", "t", _capabilities),
    "SystemCallFilter": ("SystemCallFilter", "(bas)*", _filters),
    "SystemCallErrorNumber": ("SystemCallErrorNumber", "i", _errno),
    "RestrictAddressFamilies": ("RestrictAddressFamilies", "(bas)", _families),
    "RestrictNamespaces": ("RestrictNamespaces", "t", _namespaces),
    "IPAddressDeny": ("IPAddressDeny", "a(iayu)", _addresses),
    "IPAddressAllow": ("IPAddressAllow", "a(iayu)", _addresses),
    "UMask": ("UMask", "u", _umask),
}


def check(sandbox: Mapping[str, Any]) -> dict[str, Any]:
    """The sandbox unchanged if every property is known and valid; else ValueError naming it."""
    for name, value in sandbox.items():
        if name not in PROPERTIES:
            raise ValueError(f"unknown sandbox property {name!r}; "
                             f"known: {', '.join(sorted(PROPERTIES))}")
        try:
            PROPERTIES[name][2](value)
        except ValueError as exc:
            raise ValueError(f"sandbox property {name}: {exc}") from None
    return dict(sandbox)


def merge(*levels: Mapping[str, Any] | None) -> dict[str, Any]:
    """DEFAULT, then each level, later levels winning key by key (settings default, skill,
    action)."""
    out: dict[str, Any] = dict(DEFAULT)
    for level in levels:
        out.update(level or {})
    return out


def to_dbus(sandbox: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """(D-Bus property, signature, value) of each property, as StartTransientUnit takes them."""
    out = []
    for name, value in sandbox.items():
        prop, signature, convert = PROPERTIES[name]
        if signature.endswith("*"):  # assigned once per item, like repeated unit-file lines
            out += [(prop, signature[:-1], item) for item in convert(value)]
        else:
            out.append((prop, signature, convert(value)))
    return out


Sandbox = dict[str, Any]


class StepSandboxSettings(BaseModel):
    """`step_sandbox` in the daemon's settings."""

    model_config = ConfigDict(extra="forbid")
    default: Sandbox = Field(default_factory=dict,
                             description="unit properties of every command step, over the "
                                         "built-in DEFAULT (set one to no/false to lift it)")
    skills: dict[str, Sandbox] = Field(default_factory=dict,
                                       description="skill name -> properties over the default")
    unavailable: Literal["error", "warn"] = Field(
        "warn", description="a step whose skill or action asks for a sandbox where steps "
                            "cannot run in units: fail it (error) or run it unsandboxed (warn)")

    @field_validator("default")
    @classmethod
    def _default(cls, value: Sandbox) -> Sandbox:
        return check(value)

    @field_validator("skills")
    @classmethod
    def _skills(cls, value: dict[str, Sandbox]) -> dict[str, Sandbox]:
        return {name: check(sandbox) for name, sandbox in value.items()}
