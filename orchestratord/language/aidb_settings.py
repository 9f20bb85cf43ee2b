"""The `aidb:` section of the settings: where AIDB is and what to exchange with it."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .model import Timeout

LOOPBACK_LISTEN = r"^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[::1\]|localhost):\d{1,5}$"


class AidbSettings(BaseModel):
    """AIDB (the AI stack's skill and history service) and the execute endpoint's key."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
                            description="AIDB's base URL, e.g. http://127.0.0.1:8002; "
                                        "null: no AIDB")
    api_key_file: Path | None = Field(
        None, description="file holding the API key: sent to AIDB on writes, and required "
                          "of clients on api_listen (systemd: $CREDENTIALS_DIRECTORY/aidb-key)")
    timeout: Timeout = Field(10.0, description="per request to AIDB")
    discover: bool = Field(True, description="AIDB's skills join the catalog as instructions")
    publish: bool = Field(False, description="send our skills' SKILL.md to AIDB when changed")
    history: bool = Field(True, description="record finished steps and runs in AIDB")
    project: str = Field("agent-orchestrator", description="`project` of history records")
    refresh_interval: Timeout = Field(900.0, description="how often to refresh the catalog")
    retry_max_delay: Timeout = Field(60.0, description="longest wait between tries of a "
                                                       "failing AIDB")
    undelivered_alert_after: Timeout = Field(
        3600.0, description="alert when a history record waits longer than this")
    api_listen: str | None = Field(
        None, pattern=LOOPBACK_LISTEN,
        description="loopback host:port serving POST /skills/NAME/execute to key holders")

    @property
    def enabled(self) -> bool:
        return self.url is not None

    @model_validator(mode="after")
    def _key_for_listener(self) -> AidbSettings:
        if self.api_listen and self.api_key_file is None:
            raise ValueError("api_listen needs api_key_file: the listener serves only "
                             "clients that present the key")
        return self
