"""Loading handlers: `apache2 -t` must fail, naming the file and the line,
for every handler the module cannot use (missing file or symbol, another
API major, a newer minor, no callbacks, ...) and for bad values; a
WebSocketHandler in .htaccess is not allowed; a handler built out of tree
with apxs against include/mod_websocket.h alone loads and works.
"""
import os
import re
import shutil
import subprocess

import pytest

from apiutil import (BADABI_SO, INCLUDE_DIR, OP_TEXT, TEST_SO, Events, api_locations,
                     events_path, prepare_events, require_test_handlers)

LOC = """
<Location /ok>
    SetHandler websocket
    WebSocketHandler {test_so}
</Location>
<Location /x>
    SetHandler websocket
    {directive}
</Location>
"""


@pytest.fixture(scope="module")
def cfg(env):
    require_test_handlers()
    yield env
    # the tests below may leave another configuration running
    env.restart()


def check(env, directive, name):
    """Write a config with directive in <Location /x>, run apache2 -t;
    returns (CompletedProcess, path, line of the directive)."""
    path = os.path.join(env.root, "t1020-%s.conf" % name)
    env.write_conf(locations=LOC.format(test_so=TEST_SO, directive=directive), path=path)
    with open(path) as f:
        lines = f.read().splitlines()
    first = directive.splitlines()[0].strip()
    line = next(i + 1 for i, ln in enumerate(lines) if ln.strip() == first)
    return env.check_conf(path), path, line


def assert_fails_at(r, path, line, *needles):
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    m = re.search(r"Syntax error on line (\d+) of (\S+?):", out)
    assert m, "no file and line in: %s" % out
    assert (int(m.group(1)), m.group(2)) == (line, path), out
    for n in needles:
        assert n in out, "%r not in: %s" % (n, out)


BAD = {
    "missing_file": ("WebSocketHandler {root}/no-such-handler.so", ["no-such-handler.so"]),
    "missing_symbol": ("WebSocketHandler {test} no_such_entry_symbol", ["no_such_entry_symbol"]),
    "major_mismatch": ("WebSocketHandler {bad}", ["mod_ws_badabi.so", "2.0"]),
    "newer_minor": ("WebSocketHandler {bad} mws_newer_minor", ["mws_newer_minor", "1.1"]),
    "no_callbacks": ("WebSocketHandler {bad} mws_no_callbacks", ["mws_no_callbacks"]),
    "null_handler": ("WebSocketHandler {bad} mws_null_handler", ["mws_null_handler"]),
    "small_struct": ("WebSocketHandler {bad} mws_small_struct", ["mws_small_struct"]),
    "unknown_provider": ("WebSocketHandler no_such_provider_name", ["no_such_provider_name"]),
    "not_a_handler": ("WebSocketHandler /usr/lib/apache2/modules/mod_alias.so",
                      ["mod_alias.so", "mws_handler_entry"]),
    "three_args": ("WebSocketHandler {test} mws_handler_entry extra", ["WebSocketHandler"]),
    "option_one_arg": ("WebSocketHandlerOption lonely", ["WebSocketHandlerOption"]),
    "size_abc": ("WebSocketMaxMessageSize abc", ["WebSocketMaxMessageSize", "abc"]),
    "size_zero": ("WebSocketMaxMessageSize 0", ["WebSocketMaxMessageSize"]),
    "size_negative": ("WebSocketMaxMessageSize -5", ["WebSocketMaxMessageSize"]),
    "size_trailing": ("WebSocketMaxMessageSize 12abc", ["WebSocketMaxMessageSize"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_mws_1020_01_config_error_names_file_and_line(cfg, case):
    directive, needles = BAD[case]
    directive = directive.format(root=cfg.root, test=TEST_SO, bad=BADABI_SO)
    r, path, line = check(cfg, directive, case)
    assert_fails_at(r, path, line, *needles)


@pytest.mark.parametrize("directive", [
    "WebSocketHandler {bad} mws_older_ok",                    # same file, a good entry
    "WebSocketHandler {test} mws_test_stream_entry",          # on_fragment only
    "WebSocketHandler {test}\n    WebSocketHandler {test} mws_test_stream_entry",  # last wins
])
def test_mws_1020_02_config_good_handlers(cfg, directive):
    r, _, _ = check(cfg, directive.format(test=TEST_SO, bad=BADABI_SO), "good")
    assert r.returncode == 0, r.stdout + r.stderr


def test_mws_1020_03_error_in_second_config_file(cfg):
    """The file named is the included one, not httpd.conf."""
    inc = os.path.join(cfg.root, "t1020-included.conf")
    with open(inc, "w") as f:
        f.write("# included\n\n<Location /inc>\n    SetHandler websocket\n"
                "    WebSocketHandler %s mws_newer_minor\n</Location>\n" % BADABI_SO)
    path = os.path.join(cfg.root, "t1020-include.conf")
    cfg.write_conf(extra="Include %s\n" % inc, path=path)
    r = cfg.check_conf(path)
    assert_fails_at(r, inc, 5, "mws_newer_minor")


def test_mws_1020_04_not_in_htaccess(cfg):
    d = os.path.join(cfg.docroot, "ht")
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o755)
    for name, text in (("index.html", "plain\n"),
                       (".htaccess", "SetHandler websocket\nWebSocketHandler %s\n" % TEST_SO)):
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
        os.chmod(os.path.join(d, name), 0o644)
    cfg.restart(extra='<Directory "%s">\n    AllowOverride All\n</Directory>\n' % d)
    cfg.allow_error(r"\.htaccess: WebSocketHandler not allowed here")  # (start() reset them)
    r = cfg.http(b"GET /ht/index.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert r.status == 500, r
    log = cfg.error_log_since(0)
    assert re.search(r"WebSocketHandler not allowed here", log), log[-2000:]


APXS_HANDLER = r"""
/* built by test_1020 out of tree: apxs -c -I<include> apxs_hello.c */
#include <string.h>
#include "mod_websocket.h"

static const mws_host *host;

static int hello_init(const mws_host *h, const mws_option *opts, size_t n,
                      void **instance)
{
    host = h;
    return 0;
}

static int hello_message(mws_conn *c, mws_msg_type type, const void *data,
                         size_t len)
{
    char buf[256];
    size_t n = len < sizeof(buf) - 6 ? len : sizeof(buf) - 6;

    memcpy(buf, "apxs:", 5);
    memcpy(buf + 5, data, n);
    return host->send(c, MWS_TEXT, buf, n + 5) == MWS_OK ? 0 : -1;
}

static const mws_handler hello = {
    .abi_major   = MWS_ABI_MAJOR,
    .abi_minor   = MWS_ABI_MINOR,
    .struct_size = sizeof(mws_handler),
    .name        = "apxs-hello",
    .init        = hello_init,
    .on_message  = hello_message,
};

MWS_EXPORT const mws_handler *mws_handler_entry(void)
{
    return &hello;
}
"""


def test_mws_1020_05_out_of_tree_apxs_handler(cfg):
    apxs = shutil.which("apxs") or shutil.which("apxs2")
    if not apxs:
        pytest.skip("apxs not installed")
    d = os.path.join(cfg.root, "apxs-build")
    os.makedirs(d, exist_ok=True)
    src = os.path.join(d, "apxs_hello.c")
    with open(src, "w") as f:
        f.write(APXS_HANDLER)
    r = subprocess.run([apxs, "-c", "-I" + INCLUDE_DIR, "apxs_hello.c"], cwd=d,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    so = os.path.join(d, ".libs", "apxs_hello.so")
    assert os.path.exists(so), r.stdout
    for root, dirs, files in os.walk(d):
        for n in dirs + files:
            os.chmod(os.path.join(root, n), 0o755)
    os.chmod(d, 0o755)
    cfg.restart(locations="<Location /hello>\n    SetHandler websocket\n"
                          "    WebSocketHandler %s\n</Location>\n" % so)
    ws = cfg.ws("/hello")
    try:
        assert ws.echo(OP_TEXT, "world") == (OP_TEXT, b"apxs:world")
        ws.send_close(1000)
        ws.expect_close(1000, reply=False)
    finally:
        ws.close()
