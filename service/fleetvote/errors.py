"""The one exception tree of fleetvote.

    FleetvoteError
    +-- DataError              a dataset archive is missing, corrupt or of an unknown layout
    +-- ModelError             a .tflite file cannot be used
    |   +-- ModelFormatError   not a TFLite flatbuffer, truncated, or inconsistent
    |   +-- UnsupportedModel   valid, but uses a type or operator the int8 runtime does not run
    +-- ConfigError            a settings, ensemble or catalogue file is invalid
    +-- ImageError             an upload that is not a usable image (images.py; carries its HTTP status)
    +-- Overloaded             a member can finish in time neither on a board nor on the engine:
    |                          the request is refused before any work (admission; carries Retry-After)
    +-- QuorumLost             fallback off, fewer boards than the quorum answered (names the missing)
    +-- UnknownMember          a request names a model that is not a member of the ensemble
    +-- BoardError             talking to one board failed (carries the board's url)
        +-- BoardTimeout       no (matching) answer within the phase's deadline
        +-- BoardProtocolError the board answered something that breaks the protocol
        +-- BoardRejected      the board answered with an ERROR frame
        +-- BoardGone          the port closed or disappeared (unplugged, process died)

Lower-layer exceptions (OSError, serial.SerialException, struct.error...) are re-raised at the
boundary as the most specific of these, ``from`` the original. The HTTP API translates the tree
into status codes in one place (``api/app.py``, its exception handlers); no route catches them.
"""

from __future__ import annotations


class FleetvoteError(Exception):
    """Base of every error this package raises on purpose."""


class DataError(FleetvoteError):
    pass


class ModelError(FleetvoteError):
    pass


class ModelFormatError(ModelError):
    pass


class UnsupportedModel(ModelError):
    pass


class ConfigError(FleetvoteError):
    pass


class Overloaded(FleetvoteError):
    """A member can finish before the deadline neither on a board nor on the engine: admission
    refuses the request before any of its work is queued (HTTP 503; ``retry_after_s``, whole
    seconds until the backlog ahead of it has drained, is its Retry-After)."""

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class QuorumLost(FleetvoteError):
    """Fallback is off and fewer boards than the quorum answered (HTTP 503)."""

    def __init__(self, message: str, missing: list[str]) -> None:
        super().__init__(message)
        self.missing = missing


class UnknownMember(FleetvoteError):
    """A request asks for members the ensemble does not have (the inference protocol's 404)."""

    def __init__(self, message: str, ids: list[str]) -> None:
        super().__init__(message)
        self.ids = ids


class BoardError(FleetvoteError):
    def __init__(self, message: str, url: str | None = None) -> None:
        super().__init__(f"{url}: {message}" if url else message)
        self.url = url


class BoardTimeout(BoardError):
    pass


class BoardProtocolError(BoardError):
    pass


class BoardRejected(BoardError):
    def __init__(self, message: str, url: str | None = None, code: int = 0) -> None:
        super().__init__(message, url)
        self.code = code


class BoardGone(BoardError):
    pass
