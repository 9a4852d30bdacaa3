"""Service configuration: one pydantic-settings object, from environment variables
(``FLEETVOTE_*``) and ``fleetvote serve`` flags (one per setting, made from this class by the CLI),
validated at start-up.

Lists are comma separated in the environment (``FLEETVOTE_URLS=/dev/ttyACM0,socket://h:7000``; a
JSON list is accepted too) and repeated flags on the command line (``--url A --url B``). The API
key, a secret, comes from ``FLEETVOTE_API_KEY`` or from a file (``FLEETVOTE_API_KEY_FILE``,
``--api-key-file``, e.g. a Docker or systemd secret), never from the command line, where ``ps``
shows it to every user of the machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .catalog import CATALOG, usb_ids
from .errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def catalogue_usb_ids(data: dict) -> list[str]:
    """The default usb_ids: the VID:PID of the debug probes that the board catalogue's boards
    carry (the catalogue's _doc_probes says why an STM32's own USB port is not among them); none
    when USB is not scanned, so that a service over virtual boards only needs no catalogue."""
    if not data.get("scan_usb", True):
        return []
    try:
        return usb_ids(data.get("catalog", CATALOG))
    except ConfigError as exc:
        raise ConfigError(f"{exc}; the default usb_ids come from it: set FLEETVOTE_CATALOG to the "
                          "catalogue, or FLEETVOTE_USB_IDS, or FLEETVOTE_SCAN_USB=false") from exc


def split_list(value):
    """A list setting from the environment: comma separated, or a JSON list (as before); blanks
    around items are dropped, and so is an empty string's one empty item."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{text!r} starts like a JSON list but is not one ({exc}); "
                             "or give the items comma separated") from exc
    return [item.strip() for item in text.split(",") if item.strip()]


# a list of strings that the environment gives comma separated (NoDecode: not parsed as JSON first)
StrList = Annotated[list[str], NoDecode]
LIST_FIELDS = ("urls", "link_globs", "usb_ids")
SECRET_FIELDS = ("api_key", "admin_key")  # never a flag: from the environment (api_key also from api_key_file)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLEETVOTE_", env_nested_delimiter="__")

    host: str = Field("127.0.0.1", description="bind address; 127.0.0.1 unless you mean to expose it")
    port: int = Field(8000, ge=1, le=65535)
    urls: StrList = Field(default_factory=list, description="explicit board URLs: tty paths, socket://, rfc2217://")
    link_globs: StrList = Field(
        default_factory=lambda: ["/dev/serial/by-id/*STLink*", "/dev/serial/by-id/*STMicroelectronics*"],
        description="globs of stable links to board ports (virtual boards put theirs in run/boards/)")
    catalog: Path = Field(CATALOG, description="the board catalogue (firmware/boards/catalog.json), "
                          "whose boards' probes give the default usb_ids")
    scan_usb: bool = Field(True, description="look for boards in the OS serial port list")
    usb_ids: StrList = Field(default_factory=catalogue_usb_ids,
                               description="VID:PID of boards to adopt (default: the catalogue's probes)")
    rescan_s: float = Field(2.0, gt=0, description="seconds between discovery scans")
    ensemble: Path = Field(ROOT / "models" / "zoo" / "ensemble.json", description="the ensemble file")
    zoo: Path = Field(ROOT / "models" / "zoo", description="the model zoo the ensemble's members are in")
    deadline_ms: float | None = Field(None, gt=0, description="a request's whole time in the service, from "
                                     "arrival to answer (admission refuses what cannot finish in it); default: "
                                     "each board's own deadline, from its HELLO figures or measured latency")
    deadline_margin_ms: float = Field(50.0, ge=0, description="added to a board's estimated latency")
    queue_size: int = Field(16, ge=1, le=1024, description="requests waiting per board (beyond, or past a "
                            "request's deadline: spillover to the engine; 503 when neither can finish in time)")
    fallback: bool = Field(True, description="compute missing members with the numpy engine")
    boards_share_cpu: bool = Field(False, description="the boards compute on this host's CPUs (virtual boards at "
                                   "host speed; fleetvote serve --virtual sets it): admission counts each busy board "
                                   "as a thread taking CPU from the engine's spillover")
    quorum: int | None = Field(None, ge=1, description="override the ensemble file's quorum")
    # A 12-megapixel JPEG from a phone camera is 2-6 MB at the cameras' usual quality (1.3-4 bits
    # per pixel); 10 MiB also takes one saved at maximum quality. The decoder's pixel limit
    # (images.MAX_PIXELS, 16.7 megapixels) stops decompression bombs whatever the file's size.
    upload_limit: int = Field(10 * 2**20, ge=3072, description="largest accepted request body, bytes")
    head_timeout_s: float = Field(10.0, gt=0, description="a connection sends a whole request head within this, "
                                  "from its start or from its previous answer, or is closed (408)")
    body_timeout_s: float = Field(60.0, gt=0, description="a request's whole body arrives within this of its "
                                  "head, or 408 (60 s: 10 MiB at 1.4 Mbit/s)")
    # a burst of 256 requests and the dashboard beside it fit; bodies held at once are bounded by
    # max_connections x upload_limit (5 GiB if every connection uploaded 10 MiB at once: a front
    # such as HAProxy, docs/deploy.md, bounds connections per client before that)
    max_connections: int = Field(512, ge=1, description="connections and requests at once; beyond, 503")
    api_key: str | None = Field(None, repr=False, min_length=1,
                                description="if set, required (as X-API-Key or Authorization: Bearer) on every "
                                            "endpoint but health; from the environment only")
    api_key_file: Path | None = Field(None, description="a file holding the API key (its first line)")
    admin_key: str | None = Field(None, repr=False, min_length=1,
                                  description="if set, POST /admin/reload takes it as X-Admin-Key (reloads the "
                                              "ensemble file); unset: reload by SIGHUP only; from the environment only")
    open_timeout_s: float = Field(2.0, gt=0, description="seconds to open a board's port")
    hello_timeout_s: float = Field(2.0, gt=0, description="seconds for a board to answer its HELLO")
    ping_interval_s: float = Field(5.0, gt=0, description="health check of idle boards")
    log_json: bool = Field(False, description="one JSON object per log line")

    _lists = field_validator(*LIST_FIELDS, mode="before")(split_list)

    @model_validator(mode="after")
    def _key_from_file(self) -> "Settings":
        if self.api_key_file is None:
            return self
        if self.api_key is not None:
            raise ValueError("both api_key and api_key_file are set: give the key one way")
        try:
            key = self.api_key_file.read_text().splitlines()[0].strip() if self.api_key_file.stat().st_size else ""
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read the API key file {self.api_key_file} ({exc})") from exc
        if not key:
            raise ValueError(f"the API key file {self.api_key_file} is empty")
        self.api_key = key
        return self

    @field_validator("usb_ids")
    @classmethod
    def _vidpid(cls, v: list[str]) -> list[str]:
        out = []
        for item in v:
            parts = item.split(":")
            if len(parts) != 2 or not all(len(x) == 4 for x in parts):
                raise ValueError(f"{item!r} is not a VID:PID pair like 0483:374B")
            int(parts[0], 16), int(parts[1], 16)
            out.append(item.upper())
        return out
