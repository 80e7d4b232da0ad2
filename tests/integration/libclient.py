"""Helpers around the `websockets` library (10.4, asyncio API only)."""
import asyncio

import websockets

TIMEOUT = 20


def run(coro, timeout=TIMEOUT):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def _echo_all(url, messages, ssl_ctx=None, compression="deflate"):
    """Send each message (str, bytes, or a list of fragments of one type),
    wait for its echo; return (echoes, close_code)."""
    out = []
    async with websockets.connect(url, ssl=ssl_ctx, max_size=None, ping_interval=None,
                                  open_timeout=5, close_timeout=5,
                                  compression=compression) as ws:
        for m in messages:
            await ws.send(m)
            out.append(await ws.recv())
    return out, ws.close_code


def echo_all(url, messages, ssl_ctx=None, compression="deflate"):
    return run(_echo_all(url, messages, ssl_ctx, compression))


def fragments(payload, parts):
    n = len(payload)
    if parts <= 1 or n == 0:
        return [payload]
    step = max(1, n // parts)
    frags = [payload[i:i + step] for i in range(0, step * (parts - 1), step)]
    frags.append(payload[step * (parts - 1):])
    return [f for f in frags if len(f)] or [payload]


def text_fragments(text, parts):
    """Split str text in parts (on code point boundaries, as websockets
    encodes each str fragment separately)."""
    n = len(text)
    if parts <= 1 or n < parts:
        return [text]
    step = n // parts
    return [text[i * step:(i + 1) * step] for i in range(parts - 1)] + [text[(parts - 1) * step:]]
