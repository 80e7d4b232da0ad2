"""The benchmark's load generator (tests/bench/wsload.c) against the test
server: wss:// through mod_ssl (--tls, TLS 1.3 and --tls-max 1.2) and a
broadcast with its receivers split over threads (--threads), in the clear
and over TLS.  The bench's figures are only as good as this tool: every
echoed byte is verified, every receiver must get every message, in order."""
import os
import shutil
import subprocess

import pytest

import conftest

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench", "wsload.c")
from test_1800_handlers import MOD_CHAT

LOCATIONS = """
<Location /chat-quiet>
    SetHandler websocket
    WebSocketHandler {chat}
    WebSocketHandlerOption presence off
</Location>
"""


@pytest.fixture(scope="module")
def wsload(tmp_path_factory):
    cc = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")
    if not cc:
        pytest.skip("no C compiler for wsload")
    out = str(tmp_path_factory.mktemp("wsload") / "wsload")
    r = subprocess.run([cc, "-O2", "-Wall", "-Wextra", "-Werror", "-o", out, SRC,
                        "-lz", "-lssl", "-lcrypto", "-pthread"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def lenv(env):
    if not os.path.exists(MOD_CHAT):
        pytest.fail("handler not built: %s" % MOD_CHAT, pytrace=False)
    base = conftest.WS_LOCATIONS.format(echo=conftest.MOD_ECHO, small=conftest.SMALL_LIMIT,
                                        htpasswd=env.htpasswd)
    env.restart(locations=base + LOCATIONS.format(chat=MOD_CHAT))
    yield env
    env.restart()


def run(wsload, *args):
    """wsload's summary line as a dict (it must exit 0)."""
    r = subprocess.run([wsload] + [str(a) for a in args] + ["-q", "--max-time", "60"],
                       capture_output=True, text=True, timeout=90)
    line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    d = dict(tok.split("=", 1) for tok in line.split() if "=" in tok)
    assert r.returncode == 0 and d.get("ok") == "1", (r.returncode, line, r.stderr[-2000:])
    return d


def test_mws_1601_01_echo_over_tls_verifies_every_byte(lenv, wsload):
    # 100 KB messages: several TLS records each way, partial writes
    for size, n in ((64, 400), (100000, 40)):
        d = run(wsload, "echo", "--tls", "-p", lenv.https_port, "-P", "/echo",
                "-c", 4, "-d", 2, "-s", size, "-n", n)
        assert d["msgs"] == str(n) and d["verify_err"] == "0" and d["lost"] == "0", d
        assert d["tls"] == "TLSv1.3", d


def test_mws_1601_02_tls_max_12(lenv, wsload):
    d = run(wsload, "echo", "--tls", "--tls-max", "1.2", "-p", lenv.https_port,
            "-P", "/echo", "-c", 2, "-n", 100)
    assert d["tls"] == "TLSv1.2", d


@pytest.mark.parametrize("tls", [False, True], ids=["clear", "tls"])
@pytest.mark.parametrize("threads", [1, 3])
def test_mws_1601_03_broadcast_with_threads(lenv, wsload, tls, threads):
    port = lenv.https_port if tls else lenv.http_port
    args = ["broadcast", "-p", port, "-P", "/chat-quiet?room=wl%d%d" % (threads, tls),
            "-r", 20, "-m", 40, "--rate", 40, "--settle", 0.2, "--msg-timeout", 5,
            "--threads", threads]
    if tls:
        args.append("--tls")
    d = run(wsload, *args)
    assert d["open"] == "20" and d["probed"] == "20", d
    assert d["expected"] == "800" and d["delivered"] == "800", d
    assert d["incomplete"] == "0" and d["order_violations"] == "0", d
    assert d["load_threads"] == str(threads + 1 if threads > 1 else 1), d
    assert ("tls" in d) == tls, d


def test_mws_1601_04_tls_client_refuses_a_plain_port(lenv, wsload):
    r = subprocess.run([wsload, "echo", "--tls", "-p", str(lenv.http_port), "-P", "/echo",
                        "-c", "1", "-n", "1", "--connect-timeout", "3", "--max-time", "20"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "TLS handshake failed" in r.stderr, r.stderr
    assert "connect_fail=1" in r.stdout, r.stdout
