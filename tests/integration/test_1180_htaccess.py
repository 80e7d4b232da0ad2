"""No directive of the module works in .htaccess, not even where the admin
lists it with AllowOverrideList (which lets a listed directive through
whatever its req_override says).  Before the module refused them there, an
.htaccess line `WebSocketHandler /any/file.so` loaded that shared object
into the child, in the request's pool: the next request to the folder and
a graceful restart crashed the child.  Now each request gets a 500 and the
error log names the directive ("cannot occur within htaccess files").

The directives are read from the command table (glue/mws_config.c), so one added
later is covered too (a value is guessed for one not in VALUES below).
"""
import os
import re
import shutil
import subprocess
import time

import pytest

import conftest
import wsclient

SRC_DIR = os.path.abspath(os.environ.get("MWS_SRC_DIR") or conftest.REPO)

# a valid value for each directive: the only error left is the context
VALUES = {
    "WebSocketHandler": conftest.MOD_ECHO,
    "WebSocketHandlerOption": "key value",
    "WebSocketMaxMessageSize": "4096",
    "WebSocketMaxFrameSize": "4096",
    "WebSocketMaxQueuedBytes": "1M",
    "WebSocketIdleTimeout": "5",
    "WebSocketPingInterval": "5",
    "WebSocketCloseTimeout": "1",
    "WebSocketMaxConnections": "10",
    "WebSocketMaxConnectionsPerAddress": "10",
    "WebSocketDriver": "blocking",
    "WebSocketOrigin": "any",
    "WebSocketMaxReassemblyMemory": "1M",
    "WebSocketIPv6Prefix": "64",
}

# ours, or httpd's own for a directive of the server context only, which
# AllowOverrideList cannot let through
REFUSED = r"\.htaccess: %s (?:cannot occur within htaccess files|not allowed here)"


def module_directives():
    """The directive names of the command table (glue/mws_config.c)."""
    with open(os.path.join(SRC_DIR, "glue", "mws_config.c")) as f:
        text = f.read()
    table = text[text.index("const command_rec mws_cmds[]"):]
    table = table[:table.index("{NULL}")]
    return re.findall(r'AP_INIT_\w+\(\s*"(\w+)"', table)


DIRECTIVES = module_directives()


def test_mws_1180_00_table_read():
    # the parse above found the table (a test over no directive proves nothing)
    assert set(VALUES) <= set(DIRECTIVES), DIRECTIVES


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)


@pytest.fixture(scope="module")
def hta(env):
    """/ht1180/<directive>/ holds an index.html and an .htaccess that uses the
    directive (WebSocketHandler after `SetHandler websocket`, so that an
    upgrade would reach it; the others alone, so that a GET would be a
    200 if the directive were taken); <Directory ht> lists every
    directive in AllowOverrideList."""
    # a folder of its own (test_1020 leaves an .htaccess in docroot/ht)
    top = os.path.join(env.docroot, "ht1180")
    conftest._mkdir(top)
    for name in DIRECTIVES:
        d = conftest._mkdir(os.path.join(top, name))
        _write(os.path.join(d, "index.html"), "plain %s\n" % name)
        line = "%s %s\n" % (name, VALUES.get(name, "1"))
        if name == "WebSocketHandler":
            line = "SetHandler websocket\n" + line
        _write(os.path.join(d, ".htaccess"), line)
    env.restart(extra='<Directory "%s">\n    AllowOverride None\n'
                '    AllowOverrideList SetHandler %s\n</Directory>\n'
                % (top, " ".join(DIRECTIVES)))
    yield env
    env.restart()
    shutil.rmtree(top, ignore_errors=True)


def _get_twice(env, path):
    """Two GETs of path, on one keep-alive connection where the server
    keeps it (a 500 closes it); returns the two statuses, or what went
    wrong instead (a child that died under us)."""
    statuses = []
    c = None
    try:
        for _ in range(2):
            if c is None:
                c = env.conn(timeout=10)
            c.send(("GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % path).encode())
            try:
                resp = c.read_response()
            except (wsclient.WsError, OSError) as e:
                statuses.append(repr(e))
                break
            statuses.append(resp.status)
            if "close" in (resp.header("Connection") or "").lower():
                c.close()
                c = None
    finally:
        if c is not None:
            c.close()
    return statuses


def _upgrade(env, path):
    try:
        return env.upgrade(path).status
    except (wsclient.WsError, OSError) as e:
        return repr(e)


@pytest.mark.parametrize("name", DIRECTIVES)
def test_mws_1180_01_refused_in_htaccess(hta, name):
    """Two GETs and two upgrades of the folder: all 500, each refusal
    logged (the second request to a folder is the one that crashed)."""
    hta.allow_error(REFUSED % name)
    offset = hta._log_size()
    path = "/ht1180/%s/" % name
    got = _get_twice(hta, path + "index.html") + [_upgrade(hta, path), _upgrade(hta, path)]
    assert got == [500] * 4, got
    refused = re.findall(REFUSED % name, hta.error_log_since(offset))
    assert len(refused) == 4, hta.error_log_since(offset)[-3000:]


def test_mws_1180_02_graceful_after_htaccess(hta):
    """Every child that read an .htaccess above lives through a graceful
    restart (the conftest fails the test on a crashed child), and the
    new generation serves, also the refused folders again."""
    for name in DIRECTIVES:
        hta.allow_error(REFUSED % name)
    offset = hta._log_size()
    r = subprocess.run([conftest.HTTPD, "-f", hta.conf_path, "-k", "graceful"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 20
    while "resuming normal operations" not in hta.error_log_since(offset):
        assert time.monotonic() < deadline, hta.error_log_since(offset)[-3000:]
        time.sleep(0.1)
    ws = hta.ws("/echo")
    try:
        assert ws.echo(wsclient.OP_TEXT, "after graceful") == (wsclient.OP_TEXT, b"after graceful")
    finally:
        ws.close()
    for name in DIRECTIVES:
        assert _get_twice(hta, "/ht1180/%s/index.html" % name) == [500, 500], name
    # children of the old generation finish in the background: give a
    # crash at their exit the time to be logged before the log check
    time.sleep(1)
    assert "exit signal" not in hta.error_log_since(offset)
