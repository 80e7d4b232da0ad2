"""Raw-socket WebSocket client for the mod_websocket integration tests.

Everything here is written so that a test controls the bytes on the wire:
frames are built with any FIN/RSV/opcode, any length *encoding* (7, 16 or
64 bit, also non-minimal or deliberately wrong lengths) and masked or not.
Reading handles partial reads (a frame split over many recv() calls) and
checks what RFC 6455 requires of a server's frames (unmasked, RSV 0, minimal
length, control frames <= 125 bytes and unfragmented).

Note on lengths: httpd's own test/pyhttpd/ws_util.py tests `elif n > 126`
and so encodes a 126-byte payload with the invalid 7-bit length 126.  Our
builder takes the 16-bit form from 126 on; test_000_helpers.py checks the
boundaries 125/126/65535/65536.
"""
import base64
import hashlib
import os
import socket
import ssl
import struct
import threading
import time

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

DEFAULT_TIMEOUT = 5.0


class WsError(AssertionError):
    """A protocol expectation of the test failed."""


def accept_value(key):
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 4.2.2)."""
    if isinstance(key, str):
        key = key.encode("ascii")
    return base64.b64encode(hashlib.sha1(key + GUID.encode("ascii")).digest()).decode("ascii")


def new_key():
    return base64.b64encode(os.urandom(16)).decode("ascii")


def mask_payload(payload, key):
    n = len(payload)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def build_frame(opcode, payload=b"", fin=True, rsv=0, masked=True, mask_key=None,
                length=None, len_bytes=None):
    """Build one frame.

    len_bytes: None = minimal encoding; 0 = 7-bit field, 2 = 16-bit, 8 = 64-bit.
    length: the length written into the header (default len(payload)); use it
    to write wrong lengths.  With len_bytes=0 values up to 127 are written
    as they are (so 126/127 there produce a broken header on purpose).
    """
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    b0 = (0x80 if fin else 0) | ((rsv & 0x7) << 4) | (opcode & 0xF)
    n = len(payload) if length is None else length
    if len_bytes is None:
        len_bytes = 0 if n <= 125 else (2 if n <= 0xFFFF else 8)
    mbit = 0x80 if masked else 0
    if len_bytes == 0:
        if not 0 <= n <= 127:
            raise ValueError("7-bit length field cannot hold %d" % n)
        header = bytes([b0, mbit | n])
    elif len_bytes == 2:
        header = bytes([b0, mbit | 126]) + struct.pack("!H", n)
    elif len_bytes == 8:
        header = bytes([b0, mbit | 127]) + struct.pack("!Q", n)
    else:
        raise ValueError("len_bytes must be None, 0, 2 or 8")
    if masked:
        key = os.urandom(4) if mask_key is None else bytes(mask_key)
        assert len(key) == 4
        return header + key + mask_payload(payload, key)
    return header + payload


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode("utf-8")
    return struct.pack("!H", code) + reason


class Frame:
    def __init__(self, fin, rsv, opcode, masked, payload, len_bytes, mask_key=None):
        self.fin = fin
        self.rsv = rsv
        self.opcode = opcode
        self.masked = masked
        self.payload = payload
        self.len_bytes = len_bytes  # 0, 2 or 8: which length encoding was used
        self.mask_key = mask_key

    @property
    def is_control(self):
        return self.opcode >= 0x8

    def close_info(self):
        """(code, reason_bytes) of a close frame; code None when empty."""
        assert self.opcode == OP_CLOSE
        if len(self.payload) == 0:
            return None, b""
        if len(self.payload) == 1:
            raise WsError("server sent a close frame with a 1-byte payload")
        return struct.unpack("!H", self.payload[:2])[0], self.payload[2:]

    def __repr__(self):
        return "Frame(fin=%d rsv=%d op=%#x masked=%d len=%d%s)" % (
            self.fin, self.rsv, self.opcode, self.masked, len(self.payload),
            (" payload=%r" % self.payload[:40]) if len(self.payload) <= 40 or self.is_control else "")


def parse_frame(buf):
    """Parse one frame from the start of buf.

    Returns (Frame, consumed) or None if buf does not hold a whole frame.
    Masked frames are unmasked.
    """
    if len(buf) < 2:
        return None
    b0, b1 = buf[0], buf[1]
    masked = bool(b1 & 0x80)
    n = b1 & 0x7F
    pos = 2
    len_bytes = 0
    if n == 126:
        if len(buf) < 4:
            return None
        n = struct.unpack("!H", buf[2:4])[0]
        pos, len_bytes = 4, 2
    elif n == 127:
        if len(buf) < 10:
            return None
        n = struct.unpack("!Q", buf[2:10])[0]
        pos, len_bytes = 10, 8
    key = None
    if masked:
        if len(buf) < pos + 4:
            return None
        key = bytes(buf[pos:pos + 4])
        pos += 4
    if len(buf) < pos + n:
        return None
    payload = bytes(buf[pos:pos + n])
    if masked:
        payload = mask_payload(payload, key)
    return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF, masked, payload, len_bytes, key), pos + n


def check_server_frame(f):
    """What RFC 6455 requires of every frame a server sends."""
    if f.masked:
        raise WsError("server frame is masked: %r" % f)
    if f.rsv != 0:
        raise WsError("server frame has RSV bits %d: %r" % (f.rsv, f))
    if f.opcode not in (OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG):
        raise WsError("server frame with reserved opcode: %r" % f)
    n = len(f.payload)
    minimal = 0 if n <= 125 else (2 if n <= 0xFFFF else 8)
    if f.len_bytes != minimal:
        raise WsError("server frame length %d not minimally encoded (%d length bytes)"
                      % (n, f.len_bytes))
    if f.is_control and (n > 125 or not f.fin):
        raise WsError("server control frame fragmented or > 125 bytes: %r" % f)


def split_sizes(n, parts):
    """Split n into `parts` sizes (as equal as possible, the last the largest)."""
    if parts <= 1:
        return [n]
    base = n // parts
    sizes = [base] * (parts - 1)
    sizes.append(n - base * (parts - 1))
    return sizes


# --------------------------------------------------------------------------
# UTF-8 (strict, fail-fast) for computing where a server must stop

def utf8_first_invalid(data, final=True):
    """Index of the first byte at which a strict incremental UTF-8 validator
    (Unicode table 3-7, as Hoehrmann's DFA) must fail; len(data) if the data
    only fails because it ends inside a sequence (and final is true); None
    if valid."""
    need = 0
    lo, hi = 0x80, 0xBF
    for i, b in enumerate(data):
        if need:
            if not lo <= b <= hi:
                return i
            need -= 1
            lo, hi = 0x80, 0xBF
            continue
        if b <= 0x7F:
            continue
        if 0xC2 <= b <= 0xDF:
            need = 1
        elif b == 0xE0:
            need, lo = 2, 0xA0
        elif 0xE1 <= b <= 0xEC or 0xEE <= b <= 0xEF:
            need = 2
        elif b == 0xED:
            need, hi = 2, 0x9F
        elif b == 0xF0:
            need, lo = 3, 0x90
        elif 0xF1 <= b <= 0xF3:
            need = 3
        elif b == 0xF4:
            need, hi = 3, 0x8F
        else:
            return i
    if need and final:
        return len(data)
    return None


def utf8_text(n, seed=0):
    """Exactly n bytes of valid UTF-8 mixing 1- to 4-byte characters."""
    chars = ["a", "b", "\u00e9", "c", "\u20ac", "d", "\U0001D11E", "e", "\u00df", "\u4e2d"]
    s = seed % len(chars)
    pattern = "".join(chars[s:] + chars[:s]).encode("utf-8")
    out = (pattern * (n // len(pattern) + 1))[:n]
    # cut back to a character boundary and pad with ASCII
    while out and not utf8_valid(out[-8:]) and not utf8_valid(out):
        out = out[:-1]
    return out + b"x" * (n - len(out))


def utf8_valid(data):
    """Fast strict check (CPython's decoder rejects the same strings as the
    strict validator above; test_000 checks that they agree)."""
    try:
        bytes(data).decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


# --------------------------------------------------------------------------
# HTTP

class HttpResponse:
    def __init__(self, version, status, reason, headers, body=b""):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value)
        self.body = body

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def __repr__(self):
        return "HttpResponse(%s %d %s, %r, body=%r)" % (
            self.version, self.status, self.reason, self.headers, self.body[:200])


class Conn:
    """A socket with a receive buffer and deadline-based reads."""

    def __init__(self, sock, timeout=DEFAULT_TIMEOUT):
        self.sock = sock
        self.buf = bytearray()
        self.timeout = timeout
        self.eof = False
        self.send_failed = None

    @classmethod
    def open(cls, host, port, tls_ctx=None, server_hostname=None, timeout=DEFAULT_TIMEOUT):
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls_ctx is not None:
            sock = tls_ctx.wrap_socket(sock, server_hostname=server_hostname or "localhost")
        return cls(sock, timeout)

    def send(self, data):
        """Send all of data.  Returns False (and remembers why) when the peer
        has already gone, which tests of failing connections expect."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, socket.timeout, OSError) as e:
            self.send_failed = e
            return False

    def _fill(self, deadline):
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out waiting for data from server")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(262144)
        except ConnectionResetError:
            data = b""
        except ssl.SSLError as e:
            # peer closed the TCP connection without close_notify
            if "EOF" in str(e) or "UNEXPECTED" in str(e).upper():
                data = b""
            else:
                raise
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_until(self, marker, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                out = bytes(self.buf[:i + len(marker)])
                del self.buf[:i + len(marker)]
                return out
            if not self._fill(deadline):
                raise WsError("connection closed before %r (have %r)" % (marker, bytes(self.buf[:200])))

    def read_exact(self, n, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise WsError("connection closed after %d of %d bytes" % (len(self.buf), n))
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_to_eof(self, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while self._fill(deadline):
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def read_response(self, head=False, timeout=None):
        """Read one HTTP/1.x response (head: response to HEAD, no body)."""
        raw = self.read_until(b"\r\n\r\n", timeout).decode("latin-1")
        lines = raw.split("\r\n")
        version, _, rest = lines[0].partition(" ")
        status, _, reason = rest.partition(" ")
        headers = []
        for line in lines[1:]:
            if not line:
                continue
            k, _, v = line.partition(":")
            headers.append((k.strip(), v.strip()))
        resp = HttpResponse(version, int(status), reason, headers)
        code = resp.status
        if head or code == 101 or code == 204 or code == 304 or 100 <= code < 200:
            return resp
        te = (resp.header("Transfer-Encoding") or "").lower()
        cl = resp.header("Content-Length")
        if "chunked" in te:
            body = bytearray()
            while True:
                size = int(self.read_until(b"\r\n", timeout).split(b";")[0].strip(), 16)
                if size == 0:
                    self.read_until(b"\r\n", timeout)  # (no trailers expected)
                    break
                body += self.read_exact(size, timeout)
                self.read_exact(2, timeout)
            resp.body = bytes(body)
        elif cl is not None:
            resp.body = self.read_exact(int(cl), timeout)
        else:
            resp.body = self.read_to_eof(timeout)
        return resp

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def build_request(method="GET", path="/", host="localhost", headers=(), version="HTTP/1.1"):
    lines = ["%s %s %s" % (method, path, version)]
    names = {k.lower() for k, _ in headers}
    if "host" not in names and host is not None:
        lines.append("Host: %s" % host)
    for k, v in headers:
        if v is None:
            continue
        lines.append("%s: %s" % (k, v))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def upgrade_headers(key=None, version="13", upgrade="websocket", connection="Upgrade",
                    extra=(), omit=()):
    """Header list of a client handshake; set a value to None (or name it in
    omit) to leave that header out."""
    hdrs = [("Upgrade", upgrade), ("Connection", connection),
            ("Sec-WebSocket-Key", new_key() if key is None else key),
            ("Sec-WebSocket-Version", version)]
    omit = {o.lower() for o in omit}
    hdrs = [(k, v) for k, v in hdrs if k.lower() not in omit and v is not None]
    return hdrs + list(extra)


def http_exchange(host, port, raw, tls_ctx=None, timeout=DEFAULT_TIMEOUT, head=False):
    """Send one raw request on a fresh connection, return the response."""
    c = Conn.open(host, port, tls_ctx=tls_ctx, timeout=timeout)
    try:
        c.send(raw)
        return c.read_response(head=head)
    finally:
        c.close()


# --------------------------------------------------------------------------
# WebSocket client

class WsClient:
    def __init__(self, conn, response=None, key=None):
        self.conn = conn
        self.response = response
        self.key = key
        self.frames = []  # every frame received, in order
        # the server may ping at any time (its keep-alive pings): the
        # readers that keep the connection answer them (_answer_ping).
        # Sends hold _send_lock, so that a pong from a reader thread
        # never lands inside a frame another thread is writing
        self.pings_answered = 0
        self._send_lock = threading.RLock()
        self._pending_pongs = []

    @classmethod
    def connect(cls, host, port, path="/echo", headers=(), tls_ctx=None,
                timeout=DEFAULT_TIMEOUT, key=None, conn=None):
        """Open a connection (or use conn) and do a handshake that must
        succeed with 101 and a correct Sec-WebSocket-Accept."""
        key = new_key() if key is None else key
        if conn is None:
            conn = Conn.open(host, port, tls_ctx=tls_ctx, timeout=timeout)
        req = build_request("GET", path, host="%s:%d" % (host, port),
                            headers=upgrade_headers(key=key) + list(headers))
        conn.send(req)
        resp = conn.read_response()
        if resp.status != 101:
            conn.close()
            raise WsError("handshake to %s failed: %r" % (path, resp))
        check_101(resp, key)
        return cls(conn, resp, key)

    # sending ---------------------------------------------------------------

    def send_raw(self, data):
        """Any bytes, also part of a frame (so no pending pong follows)."""
        with self._send_lock:
            return self.conn.send(data)

    def send_frame(self, opcode, payload=b"", **kw):
        data = build_frame(opcode, payload, **kw)
        return self._send_whole(lambda: self.conn.send(data))

    def send_message(self, opcode, payload, fragments=None, chop=None, **kw):
        """Send a message, whole (fragments None/1) or in fragments:
        fragments is an int (number of fragments) or a list of sizes.
        chop: write the resulting bytes in pieces of that many bytes."""
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        if fragments is None or fragments == 1:
            sizes = [len(payload)]
        elif isinstance(fragments, int):
            sizes = split_sizes(len(payload), fragments)
        else:
            sizes = list(fragments)
            assert sum(sizes) == len(payload)
        data = bytearray()
        pos = 0
        for i, s in enumerate(sizes):
            data += build_frame(opcode if i == 0 else OP_CONT, payload[pos:pos + s],
                                fin=(i == len(sizes) - 1), **kw)
            pos += s
        return self.send_chopped(bytes(data), chop)

    def send_chopped(self, data, chop=None):
        """Whole frames in data (written in pieces of chop bytes)."""
        if not chop:
            return self._send_whole(lambda: self.conn.send(data))
        return self._send_whole(lambda: all(self.conn.send(data[i:i + chop])
                                            for i in range(0, len(data), chop)))

    def _send_whole(self, send):
        """Run send (it writes whole frames) under _send_lock, then send the
        pongs that a reader queued meanwhile."""
        with self._send_lock:
            ok = send()
            self._flush_pongs()
        if self._pending_pongs:     # queued after the flush, before the release
            self._try_flush_pongs()
        return ok

    def _flush_pongs(self):
        """Send the queued pongs (the caller holds _send_lock, between frames)."""
        while self._pending_pongs:
            self.conn.send(build_frame(OP_PONG, self._pending_pongs.pop(0)))

    def _try_flush_pongs(self):
        if self._send_lock.acquire(blocking=False):
            try:
                self._flush_pongs()
            finally:
                self._send_lock.release()

    def _answer_ping(self, f):
        """Answer a server ping with a pong of its payload (RFC 6455 5.5.2),
        now if no other thread is writing, else right after its frame
        (waiting for it could deadlock against a server that waits for us
        to read).  A send that fails is seen by the next read as EOF."""
        self.pings_answered += 1
        self._pending_pongs.append(f.payload)
        self._try_flush_pongs()

    def send_close(self, code=None, reason=b"", **kw):
        return self.send_frame(OP_CLOSE, close_payload(code, reason), **kw)

    # receiving -------------------------------------------------------------

    def recv_frame(self, timeout=None):
        """Next frame, or None at EOF.  Raises socket.timeout."""
        deadline = time.monotonic() + (self.conn.timeout if timeout is None else timeout)
        while True:
            r = parse_frame(self.conn.buf)
            if r is not None:
                f, used = r
                del self.conn.buf[:used]
                check_server_frame(f)
                self.frames.append(f)
                return f
            if not self.conn._fill(deadline):
                if self.conn.buf:
                    raise WsError("EOF inside a frame (%d bytes buffered)" % len(self.conn.buf))
                return None

    def recv_message(self, timeout=None):
        """Next data message as (opcode, payload).  A ping (which a server
        may send at any time, also between the fragments of a message) is
        answered with a pong and skipped.  Fails on a pong or a close, an
        unexpected continuation, or EOF."""
        deadline = time.monotonic() + (self.conn.timeout if timeout is None else timeout)
        opcode = None
        parts = []
        while True:
            f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if f is None:
                raise WsError("EOF while waiting for a message")
            if f.opcode == OP_PING:
                self._answer_ping(f)
                continue
            if f.is_control:
                if f.opcode == OP_CLOSE:
                    raise WsError("got close %r while waiting for a message" % (f.close_info(),))
                raise WsError("unexpected control frame %r" % f)
            if opcode is None:
                if f.opcode == OP_CONT:
                    raise WsError("server sent a continuation without a start")
                opcode = f.opcode
            elif f.opcode != OP_CONT:
                raise WsError("server started a new message inside a fragmented one")
            parts.append(f.payload)
            if f.fin:
                payload = b"".join(parts)
                if opcode == OP_TEXT and not utf8_valid(payload):
                    raise WsError("server sent invalid UTF-8 in a text message")
                return opcode, payload

    def echo(self, opcode, payload, fragments=None, timeout=None, **kw):
        """Send a message and return the echoed (opcode, payload)."""
        assert self.send_message(opcode, payload, fragments, **kw), self.conn.send_failed
        return self.recv_message(timeout)

    def expect_pong(self, payload, timeout=None):
        """The next frame other than a server ping (answered) must be a pong
        with payload."""
        deadline = time.monotonic() + (self.conn.timeout if timeout is None else timeout)
        f = self.recv_frame(timeout)
        while f is not None and f.opcode == OP_PING:
            self._answer_ping(f)
            f = self.recv_frame(max(0.0, deadline - time.monotonic()))
        if f is None:
            raise WsError("EOF while waiting for a pong")
        if f.opcode != OP_PONG:
            raise WsError("expected pong, got %r%s" % (
                f, " %r" % (f.close_info(),) if f.opcode == OP_CLOSE else ""))
        if f.payload != payload:
            raise WsError("pong payload %r != ping payload %r" % (f.payload[:60], payload[:60]))
        return f

    def read_until_close(self, timeout=None):
        """Read frames until a close frame; returns (frames_before, close_frame)
        or (frames_before, None) on EOF without a close frame."""
        deadline = time.monotonic() + (self.conn.timeout if timeout is None else timeout)
        before = []
        while True:
            f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if f is None or f.opcode == OP_CLOSE:
                return before, f
            before.append(f)

    def expect_close(self, code="any", timeout=None, allow_frames=False, reply=True,
                     expect_eof=True):
        """Wait for the server's close frame; assert its code (None = empty
        payload, "any" = don't care, a tuple = one of).  Then answer with a
        close (as a client should) and expect the server to end TCP.
        Frames before the close fail unless allow_frames; server pings are
        allowed anyway (not answered: the connection is closing).
        Returns (code, reason)."""
        before, f = self.read_until_close(timeout)
        if f is None:
            raise WsError("EOF without a close frame (expected %s); frames before: %r"
                          % (code, before))
        before = [b for b in before if b.opcode != OP_PING]
        if before and not allow_frames:
            raise WsError("unexpected frames before close: %r" % before)
        got, reason = f.close_info()
        if code != "any":
            ok = got in code if isinstance(code, tuple) else got == code
            if not ok:
                raise WsError("close code %r (reason %r), expected %r" % (got, reason, code))
        if reason and not utf8_valid(reason):
            raise WsError("server close reason is not UTF-8: %r" % reason)
        if reply:
            self.send_close(got if got is not None else None)
        if expect_eof:
            self.expect_eof(timeout)
        return got, reason

    def expect_eof(self, timeout=None):
        """The server must end the TCP connection (no more frames)."""
        f = self.recv_frame(timeout)
        if f is not None:
            raise WsError("expected EOF, got %r" % f)

    def close(self):
        self.conn.close()


def check_101(resp, key):
    if resp.status != 101:
        raise WsError("expected 101, got %r" % resp)
    up = resp.header("Upgrade")
    if up is None or up.strip().lower() != "websocket":
        raise WsError("101 without Upgrade: websocket: %r" % resp)
    conn = [t.strip().lower() for t in (resp.header("Connection") or "").split(",")]
    if "upgrade" not in conn:
        raise WsError("101 without Connection: Upgrade: %r" % resp)
    acc = resp.header_all("Sec-WebSocket-Accept")
    if acc != [accept_value(key)]:
        raise WsError("Sec-WebSocket-Accept %r != %r" % (acc, accept_value(key)))
