"""host->log formats as C99's printf does (the header declares it printf-
like, so gcc checks the arguments as printf's): %zu, %llu, %jd and %hhu
are understood and a %s after them gets its own argument.  With APR's
formatter the first three were not understood, every later argument
shifted, and a following %s crashed the child.  Without a connection (as in
init) the line names the handler and its configuration line.
"""
import re
import time

import pytest

from apiutil import (OP_TEXT, api_locations, cmd, events_path, prepare_events,
                     require_test_handlers, TEST_SO)

LOCATIONS = """
<Location /tlog>
    SetHandler websocket
    WebSocketHandler {so}
    WebSocketHandlerOption LogFile {log}
    WebSocketHandlerOption LogTest initword
</Location>
"""


@pytest.fixture(scope="module")
def logenv(env):
    require_test_handlers()
    prepare_events(env)
    env.restart(locations=api_locations(env, LOCATIONS.format(so=TEST_SO,
                                                              log=events_path(env))))
    yield env
    env.restart()


def test_mws_1025_01_init_log_c99_and_tag(logenv):
    # every child logs from its init(); the server answers before the last
    # child has run it
    deadline = time.monotonic() + 10
    while True:
        text = logenv.error_log_since(0)
        lines = [ln for ln in text.splitlines() if "logtest" in ln]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert lines, "no logtest line from init: %s" % text[-2000:]
    rx = re.compile(r"\[websocket:notice\] .*MWS00012: test \(.*httpd\.conf:\d+\): "
                    r"logtest 42 18446744073709551615 -7 200 initword$")
    assert all(rx.search(ln) for ln in lines), lines[:3]


def test_mws_1025_02_connection_log_c99(logenv):
    offset = logenv._log_size()
    ws = logenv.ws("/tlog")
    assert cmd(ws, "logtest") == "logtest done"
    ws.close()
    text = logenv.error_log_since(offset)
    assert re.search(r"MWS00011: ws\(\d+\): test: logtest 42 18446744073709551615 "
                     r"-7 200 conn", text), text[-2000:]
