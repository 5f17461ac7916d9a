"""A TCP proxy that behaves like a slow line: a shared bandwidth per direction and a one-way delay.

Used by the benchmarks where ``tc netem`` is not available (this machine's
kernel has no netem). Every connection through the proxy shares one link per
direction, as the connections of a browser share a village's line: a chunk
leaves when the link has finished sending what came before it (serialisation
at ``rate_bps``) and arrives ``delay_s`` later (propagation). A round trip
therefore costs ``2 × delay_s`` plus serialisation.

    with Throttle(("127.0.0.1", 8080), rate_bps=2_000_000, delay_s=0.05) as line:
        ...  # talk to http://127.0.0.1:{line.port}/
        line.bytes_down  # what crossed towards the client
"""

from __future__ import annotations

import asyncio
import threading
import time
from types import TracebackType

CHUNK = 16 * 1024


class _Link:
    """One direction of the line: serialises chunks at ``rate_bps`` and delivers them ``delay_s`` later."""

    def __init__(self, rate_bps: float, delay_s: float) -> None:
        self.rate_bps, self.delay_s = rate_bps, delay_s
        self.free_at = 0.0
        self.bytes = 0

    def arrival(self, size: int) -> float:
        """When a chunk of ``size`` bytes handed over now reaches the other end (monotonic clock)."""
        start = max(time.monotonic(), self.free_at)
        self.free_at = start + size * 8 / self.rate_bps
        self.bytes += size
        return self.free_at + self.delay_s


class Throttle:
    """The proxy, run on its own event loop thread; a context manager."""

    def __init__(self, upstream: tuple[str, int], rate_bps: float, delay_s: float) -> None:
        self.upstream = upstream
        self.down = _Link(rate_bps, delay_s)  # server → client
        self.up = _Link(rate_bps, delay_s)  # client → server
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="throttle", daemon=True)

    @property
    def bytes_down(self) -> int:
        """Bytes sent towards the client so far."""
        return self.down.bytes

    @property
    def bytes_up(self) -> int:
        """Bytes sent towards the server so far."""
        return self.up.bytes

    def reset_counters(self) -> None:
        """Start counting bytes afresh."""
        self.down.bytes = self.up.bytes = 0

    def __enter__(self) -> Throttle:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        asyncio.run_coroutine_threadsafe(self._cancel_connections(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _cancel_connections(self) -> None:
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            _pump(client_reader, server_writer, self.up), _pump(server_reader, client_writer, self.down),
            return_exceptions=True,
        )


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link) -> None:
    """Copy one direction through ``link``, keeping the order of chunks."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, chunk = await queue.get()
            if not chunk:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            writer.write(chunk)
            await writer.drain()
        writer.close()

    sender = asyncio.create_task(deliver())
    try:
        while chunk := await reader.read(CHUNK):
            queue.put_nowait((link.arrival(len(chunk)), chunk))
    finally:
        queue.put_nowait((0.0, b""))
        await sender
