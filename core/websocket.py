"""Writing WebSocket messages without awaiting: websockets' Sans-I/O layer, one transport write.

``websockets.asyncio.connection.Connection.send`` costs, per message, an async context
manager (``send_context``), a flow-control ``drain`` and a transport write per frame; on a
drive socket that carries a 640-byte frame every 20 ms per stream, that bookkeeping is a
large share of the gateway's CPU per chunk (bench/RESULTS.md, hot spot 6). When nothing can
make the send wait — the connection is open and the transport's write buffer is empty —
the same frames can be built by the library's own protocol object (``Protocol.send_binary``
/ ``send_text``: framing, masking, state checks stay the library's) and handed to the
transport in one ``write``. Otherwise the caller uses ``send``, which waits as it should.
"""

from __future__ import annotations

from collections.abc import Sequence

from websockets.asyncio.connection import Connection
from websockets.protocol import State


def write_now(ws: Connection, messages: Sequence[bytes], *, text: bool = False) -> bool:
    """Write ``messages`` (one WebSocket message each) now if no wait could be needed.

    Args:
        ws: an open websockets asyncio connection.
        messages: payloads; binary frames, or text frames of UTF-8 bytes when ``text``.
        text: send Text frames (the payloads must be UTF-8).

    Returns:
        ``True`` when every message was written to the transport in one ``write``;
        ``False`` when nothing was written because ``send`` would have to wait or fail
        (connection not open, a fragmented message in progress, data still buffered in the
        transport, transport closing): the caller then awaits ``ws.send`` as usual, which
        applies websockets' flow control and raises ``ConnectionClosed`` as it should.
    """
    protocol = ws.protocol
    transport = ws.transport
    if (
        protocol.state is not State.OPEN
        or protocol.expect_continuation_frame
        or transport.is_closing()
        or transport.get_write_buffer_size()
    ):
        return False
    send = protocol.send_text if text else protocol.send_binary
    for message in messages:
        send(message)
    # Frames the protocol queued earlier (a pong) come first, as websockets would send them.
    data = protocol.data_to_send()
    try:
        transport.write(data[0] if len(data) == 1 else b"".join(data))
    except (OSError, RuntimeError):
        # The transport failed under us: end the connection; the caller's ``send`` then
        # raises ConnectionClosed, the error it handles.
        transport.abort()
        return False
    return True
