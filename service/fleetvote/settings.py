"""Service configuration: one pydantic-settings object, from environment variables
(``FLEETVOTE_*``) and ``fleetvote serve`` flags, validated at start-up."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLEETVOTE_", env_nested_delimiter="__")

    host: str = Field("127.0.0.1", description="bind address; 127.0.0.1 unless you mean to expose it")
    port: int = Field(8000, ge=1, le=65535)
    urls: list[str] = Field(default_factory=list, description="explicit board URLs: tty paths, socket://, rfc2217://")
    link_globs: list[str] = Field(
        default_factory=lambda: ["/dev/serial/by-id/*STLink*", "/dev/serial/by-id/*STMicroelectronics*"],
        description="globs of stable links to board ports (virtual boards put theirs in run/boards/)")
    catalog: Path = Field(CATALOG, description="the board catalogue (firmware/boards/catalog.json), "
                          "whose boards' probes give the default usb_ids")
    scan_usb: bool = Field(True, description="look for boards in the OS serial port list")
    usb_ids: list[str] = Field(default_factory=catalogue_usb_ids,
                               description="VID:PID of boards to adopt (default: the catalogue's probes)")
    rescan_s: float = Field(2.0, gt=0, description="seconds between discovery scans")
    ensemble: Path = Field(ROOT / "models" / "zoo" / "ensemble.json")
    zoo: Path = Field(ROOT / "models" / "zoo")
    deadline_ms: float | None = Field(None, gt=0, description="per-request deadline; default: per board from its HELLO figures")
    deadline_margin_ms: float = Field(50.0, ge=0, description="added to a board's estimated latency")
    queue_size: int = Field(16, ge=1, le=1024, description="requests waiting per board (beyond: fallback, "
                            "or 503 when every board is full)")
    fallback: bool = Field(True, description="compute missing members with the numpy engine")
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
    api_key: str | None = Field(None, description="if set, required as X-API-Key on every endpoint but health")
    open_timeout_s: float = Field(2.0, gt=0)
    hello_timeout_s: float = Field(2.0, gt=0)
    ping_interval_s: float = Field(5.0, gt=0, description="health check of idle boards")
    log_json: bool = Field(False, description="one JSON object per log line")

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
