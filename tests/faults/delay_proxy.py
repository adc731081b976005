#!/usr/bin/env python3
"""tests/faults/delay_proxy.py - a TCP proxy that adds latency and counts.

    delay_proxy.py --target PORT [--listen PORT] [--delay MS] [--stats FILE]
                   [--max-seconds S]
    delay_proxy.py LISTEN TARGET [options]

Listens on 127.0.0.1:LISTEN (0 or absent: a free port; printed as the first
line of stdout, "PORT n") and forwards every connection to
127.0.0.1:TARGET. Every chunk is delivered DELAY ms (default 25) after it
arrived, in each direction, in order: pure latency, no bandwidth limit, so
a loopback run looks like a WAN round trip of 2 x DELAY.

Counters, summed over all connections, are written as JSON to FILE every
second, on SIGTERM / SIGINT and on exit (atomically: FILE.tmp, rename):
  {"connections": n, "bytes_client_to_server": n, "bytes_server_to_client": n,
   "round_trips": n, "delay_ms": d, "seconds": s}
round_trips counts, per connection, every time data flows server->client
after client->server data (the greeting alone is not one): a client that
waits for each reply makes one per command, a pipelining client far fewer.

Bounded: exits after --max-seconds (default 300).
"""
import argparse
import asyncio
import json
import os
import signal
import sys
import time


class Stats:
    def __init__(self, delay_ms):
        self.connections = 0
        self.c2s = 0
        self.s2c = 0
        self.round_trips = 0
        self.delay_ms = delay_ms
        self.start = time.monotonic()

    def as_dict(self):
        return {"connections": self.connections, "bytes_client_to_server": self.c2s,
                "bytes_server_to_client": self.s2c, "round_trips": self.round_trips,
                "delay_ms": self.delay_ms, "seconds": round(time.monotonic() - self.start, 3)}

    def write(self, path):
        if not path:
            return
        tmp = path + ".tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(self.as_dict(), f)
                f.write("\n")
            os.replace(tmp, path)
        except OSError as e:
            sys.stderr.write("delay_proxy: writing %s: %s\n" % (path, e))


async def pump(reader, writer, delay, on_data):
    """reader -> writer, each chunk delivered `delay` seconds after arrival."""
    q = asyncio.Queue()
    loop = asyncio.get_running_loop()

    async def read_side():
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                on_data(len(data))
                q.put_nowait((loop.time() + delay, data))
        except (ConnectionError, OSError):
            pass
        q.put_nowait((loop.time() + delay, None))

    async def write_side():
        try:
            while True:
                when, data = await q.get()
                wait = when - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if data is None:
                    if writer.can_write_eof():
                        writer.write_eof()
                    await writer.drain()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass

    await asyncio.gather(read_side(), write_side())


async def main():
    ap = argparse.ArgumentParser(description="TCP proxy with added latency and counters")
    ap.add_argument("ports", nargs="*", type=int, help="LISTEN TARGET")
    ap.add_argument("--listen", type=int, default=0)
    ap.add_argument("--target", type=int, default=None)
    ap.add_argument("--delay", type=float, default=25, help="milliseconds, each direction")
    ap.add_argument("--stats", default=None)
    ap.add_argument("--max-seconds", type=float, default=300)
    args = ap.parse_args()
    if len(args.ports) == 2:
        args.listen, args.target = args.ports
    elif len(args.ports) == 1 and args.target is None:
        args.target = args.ports[0]
    elif args.ports:
        ap.error("positional arguments are LISTEN TARGET")
    if args.target is None:
        ap.error("--target PORT is required")

    stats = Stats(args.delay)
    delay = args.delay / 1000.0
    done = asyncio.Event()

    async def handle(creader, cwriter):
        stats.connections += 1
        last = [None]  # direction of the previous data on this connection

        def c2s(n):
            stats.c2s += n
            last[0] = "c2s"

        def s2c(n):
            stats.s2c += n
            if last[0] == "c2s":
                stats.round_trips += 1
            last[0] = "s2c"

        try:
            sreader, swriter = await asyncio.open_connection("127.0.0.1", args.target)
        except OSError as e:
            sys.stderr.write("delay_proxy: connect to %d: %s\n" % (args.target, e))
            cwriter.close()
            return
        try:
            await asyncio.gather(pump(creader, swriter, delay, c2s), pump(sreader, cwriter, delay, s2c))
        finally:
            for w in (swriter, cwriter):
                try:
                    w.close()
                except OSError:
                    pass

    server = await asyncio.start_server(handle, "127.0.0.1", args.listen)
    print("PORT %d" % server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)

    async def ticker():
        while True:
            stats.write(args.stats)
            await asyncio.sleep(1)

    tick = asyncio.create_task(ticker())
    try:
        await asyncio.wait_for(done.wait(), timeout=args.max_seconds)
    except asyncio.TimeoutError:
        sys.stderr.write("delay_proxy: --max-seconds reached\n")
    tick.cancel()
    stats.write(args.stats)
    server.close()
    sys.stdout.flush()
    os._exit(0)  # open connections go with us


if __name__ == "__main__":
    asyncio.run(main())
