#!/usr/bin/env python3
"""Loopback TCP relay that records PostgreSQL traffic for codec tests.

Usage: relay.py LISTEN_PORT UPSTREAM_PORT OUT_DIR
Each accepted connection N writes OUT_DIR/conn-N.fe.bin (client -> server bytes)
and OUT_DIR/conn-N.be.bin (server -> client bytes), byte-exact, in order.
Only 127.0.0.1 is used on both sides.
"""
import asyncio
import itertools
import os
import sys

counter = itertools.count(1)


async def pump(reader, writer, sink):
    try:
        while data := await reader.read(65536):
            sink.write(data)
            sink.flush()
            writer.write(data)
            await writer.drain()
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def handle(c_reader, c_writer, upstream_port, out_dir):
    n = next(counter)
    s_reader, s_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
    with open(os.path.join(out_dir, f"conn-{n}.fe.bin"), "wb") as fe, \
         open(os.path.join(out_dir, f"conn-{n}.be.bin"), "wb") as be:
        await asyncio.gather(pump(c_reader, s_writer, fe), pump(s_reader, c_writer, be))


async def main():
    listen_port, upstream_port, out_dir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    os.makedirs(out_dir, exist_ok=True)
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, upstream_port, out_dir), "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


asyncio.run(main())
