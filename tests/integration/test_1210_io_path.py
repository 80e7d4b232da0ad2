"""Which I/O path each kind of connection takes (MWS00089 at LogLevel
websocket:debug): the plain-socket path only where every filter of the
connection is httpd's core one (mod_logio's counter allowed); TLS
(mod_ssl), HTTP/2 streams (mod_http2) and any other connection filter (here
mod_dumpio) keep the filter path.  The messages are the same either way;
test_1211 checks that mod_logio's byte counts stay right on both."""
import os
import re
import shutil
import subprocess
import time

import pytest

from test_1200_http2 import CLIENT, MOD_HTTP2, NODE

MOD_DUMPIO = "/usr/lib/apache2/modules/mod_dumpio.so"
PATH_RX = r"MWS00089: ws\((\d+)\): I/O through (.*)$"


def paths_since(env, offset):
    deadline = time.monotonic() + 5
    while True:
        found = [m.group(2) for m in (re.search(PATH_RX, ln)
                                      for ln in env.error_log_since(offset).splitlines())
                 if m]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def echo_some(ws):
    for i, size in enumerate((0, 1, 125, 126, 65535, 65536, 300000)):
        payload = bytes((i + k) % 251 for k in range(size))
        assert ws.echo(2, payload) == (2, payload)
    assert ws.echo(1, "h\u00e9llo".encode()) == (1, "h\u00e9llo".encode())


@pytest.fixture(scope="module")
def dbgenv(env):
    env.restart(extra="LogLevel websocket:debug\n")
    yield env
    env.restart()


def test_mws_1210_01_plain_http_takes_the_plain_socket(dbgenv):
    off = dbgenv._log_size()
    ws = dbgenv.ws("/echo")
    echo_some(ws)
    ws.close()
    assert paths_since(dbgenv, off) == ["plain socket"]


def test_mws_1210_02_tls_keeps_the_filters(dbgenv):
    off = dbgenv._log_size()
    ws = dbgenv.ws("/echo", tls=True)
    echo_some(ws)
    ws.close()
    found = paths_since(dbgenv, off)
    assert len(found) == 1 and re.match(r"filters \(ssl/tls filter\)", found[0], re.I), found


def test_mws_1210_03_another_connection_filter_keeps_the_filters(env):
    if not os.path.exists(MOD_DUMPIO):
        pytest.skip("mod_dumpio is not installed")
    env.restart(extra="LoadModule dumpio_module %s\nDumpIOInput On\nDumpIOOutput On\n"
                      "LogLevel websocket:debug dumpio:trace7\n" % MOD_DUMPIO)
    try:
        off = env._log_size()
        ws = env.ws("/echo")
        for payload in (b"through dumpio", b"x" * 5000):
            assert ws.echo(2, payload) == (2, payload)
        ws.close()
        found = paths_since(env, off)
        assert len(found) == 1 and re.match(r"filters \(dumpio_(in|out)\)", found[0], re.I), found
        # and dumpio saw the WebSocket's bytes
        assert "through dumpio" in env.error_log_since(off)
    finally:
        env.restart()


def test_mws_1210_04_http2_streams_keep_the_filters(env):
    if not NODE or not os.path.exists(MOD_HTTP2):
        pytest.skip("needs node and mod_http2")
    if env.mpm == "prefork":
        pytest.skip("mod_http2 does not serve HTTP/2 under the prefork MPM")
    env.restart(extra="LoadModule http2_module %s\nProtocols h2 h2c http/1.1\n"
                      "H2WebSockets on\nLogLevel websocket:debug\n" % MOD_HTTP2)
    try:
        off = env._log_size()
        r = subprocess.run([NODE, CLIENT, "http://127.0.0.1:%d" % env.http_port, "/echo"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        found = paths_since(env, off)
        assert found and all(p == "filters (an HTTP/2 stream)" for p in found), found
    finally:
        env.restart()
