"""The callback-level API: a :class:`Listener` per connection.

The transport calls its methods directly as things happen: no Future, queue
or task per message. Override what you need; every method has a default
that does nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from .transport import WebSocketTransport

__all__ = ["Listener"]


class Listener:
    """Receives the events of one WebSocket connection by direct calls.

    Exceptions raised by these methods close the connection with 1011
    (internal error) and are logged on ``logging.getLogger("wsfast")``.
    """

    __slots__ = ()

    def on_open(self, ws: WebSocketTransport) -> None:
        """The opening handshake succeeded; ``ws`` sends and closes."""

    def on_text(self, data: Union[str, bytes]) -> None:
        """A text message (``bytes`` when the connection has ``text_as_bytes``)."""

    def on_binary(self, data: bytes) -> None:
        """A binary message."""

    def on_fragment(self, data: Union[str, bytes], text: bool, fin: bool) -> None:
        """A piece of a message, when the connection has ``stream_messages``."""

    def on_ping(self, data: bytes) -> None:
        """A ping (the pong has already been sent)."""

    def on_pong(self, data: bytes) -> None:
        """A pong."""

    def on_close(self, code: int, reason: str) -> None:
        """The connection is closed: the close code and reason received
        (1006 and ``""`` when no close frame arrived)."""

    def pause_writing(self) -> None:
        """The transport's write buffer is above its high-water mark."""

    def resume_writing(self) -> None:
        """The transport's write buffer drained below its low-water mark."""

    def _pending(self) -> bool:
        """Whether messages delivered to this listener still wait for the
        application (the awaitable API's queue). A callback listener has
        handled each message when its method returns: ``False``."""
        return False
