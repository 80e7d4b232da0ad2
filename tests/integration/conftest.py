"""pyhttpd-style environment for the mod_websocket integration tests.

A session-scoped fixture `env`, parametrized over the MPMs (event, worker,
prefork; restrict with MWS_MPMS=event,worker), builds a private server root
in a world-readable temp dir, writes httpd.conf, starts /usr/sbin/apache2
and stops it at the end.  After every test that uses it, the error log must
not have gained an unexpected error (see ERROR_PATTERNS, the allow_errors
marker and env.allow_error()).

Environment:
  MWS_BUILD_DIR   where .libs/mod_websocket.so and handlers/.libs/mod_ws_echo.so are
                  (default: the repository root)
  MWS_MPMS        comma list of MPMs to run (default event,worker,prefork)
  MWS_TRACE=1     add `LogLevel websocket:trace8`
  MWS_KEEP=1      keep the server roots (their paths are printed at teardown)
  MWS_HTTPD_PRELOAD      libraries to LD_PRELOAD into httpd only (a sanitized build:
                         the ASan/UBSan runtimes), space or colon separated
  MWS_HTTPD_ENV          more "NAME=value" words for httpd only (ASAN_OPTIONS=...)
  MWS_HTTPD              run this instead of /usr/sbin/apache2 (same arguments; the
                         valgrind pass, tests/valgrind/run.sh, uses a wrapper)
  MWS_START_TIMEOUT      seconds to wait for httpd to answer at start (default 20)
  MWS_SANITIZER_LOG_DIR  where the sanitizers write their reports (log_path=DIR/asan
                         ...); a test fails when a report file appears or grows
With MWS_HTTPD_PRELOAD or MWS_HTTPD_ENV, HTTPD is a wrapper script that sets them and
execs /usr/sbin/apache2, so pytest and its other helpers run without them.
"""
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import wsclient  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
BUILD_DIR = os.path.abspath(os.environ.get("MWS_BUILD_DIR") or REPO)
MOD_WS = os.path.join(BUILD_DIR, ".libs", "mod_websocket.so")
MOD_ECHO = os.path.join(BUILD_DIR, "handlers", ".libs", "mod_ws_echo.so")
HTTPD_REAL = os.environ.get("MWS_HTTPD") or "/usr/sbin/apache2"
HTTPD = HTTPD_REAL
START_TIMEOUT = float(os.environ.get("MWS_START_TIMEOUT") or 20)
HTTPD_PRELOAD = " ".join(os.environ.get("MWS_HTTPD_PRELOAD", "").replace(":", " ").split())
HTTPD_ENV = os.environ.get("MWS_HTTPD_ENV", "").split()
SANITIZER_LOG_DIR = os.environ.get("MWS_SANITIZER_LOG_DIR") or None


def _httpd_wrapper():
    """A script that runs apache2 with the preload and environment of
    MWS_HTTPD_PRELOAD / MWS_HTTPD_ENV (only httpd gets them)."""
    for word in HTTPD_ENV:
        if "=" not in word or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", word):
            raise RuntimeError("MWS_HTTPD_ENV: %r is not NAME=value" % word)
    d = tempfile.mkdtemp(prefix="mws-httpd-wrap-")
    os.chmod(d, 0o755)
    path = os.path.join(d, "apache2")
    lines = ["#!/bin/sh", "# written by tests/integration/conftest.py"]
    for word in HTTPD_ENV:
        k, _, v = word.partition("=")
        lines.append("%s='%s'; export %s" % (k, v.replace("'", "'\\''"), k))
    if HTTPD_PRELOAD:
        lines.append("LD_PRELOAD='%s'; export LD_PRELOAD" % HTTPD_PRELOAD)
    lines.append('exec %s "$@"' % HTTPD_REAL)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(path, 0o755)
    return path


if HTTPD_PRELOAD or HTTPD_ENV:
    HTTPD = _httpd_wrapper()


def sanitizer_reports():
    """{path: size} of the sanitizer report files (see MWS_SANITIZER_LOG_DIR)."""
    if not SANITIZER_LOG_DIR:
        return {}
    out = {}
    try:
        names = os.listdir(SANITIZER_LOG_DIR)
    except OSError:
        return {}
    for n in names:
        p = os.path.join(SANITIZER_LOG_DIR, n)
        try:
            out[p] = os.path.getsize(p)
        except OSError:
            pass
    return out


def new_sanitizer_reports(before):
    """Report text that appeared since `before` (a sanitizer_reports() result)."""
    found = []
    for p, size in sorted(sanitizer_reports().items()):
        old = before.get(p, 0)
        if size > old:
            try:
                with open(p, "rb") as f:
                    f.seek(old)
                    text = f.read(20000).decode("utf-8", "replace")
            except OSError:
                text = "(unreadable)"
            found.append("%s:\n%s" % (p, text))
    return found
HTTPD_MODULES = "/usr/lib/apache2/modules"
ALL_MPMS = ("event", "worker", "prefork")
MPMS = [m.strip() for m in os.environ.get("MWS_MPMS", ",".join(ALL_MPMS)).split(",") if m.strip()]
for _m in MPMS:
    if _m not in ALL_MPMS:
        raise RuntimeError("MWS_MPMS: unknown MPM %r" % _m)

SMALL_LIMIT = 1024
AUTH_USER = "wsuser"
AUTH_PASS = "ws-secret"
INDEX_HTML = b"<html><body>mod_websocket integration test index</body></html>\n"

# what an error log line must not contain after a test
ERROR_PATTERNS = [
    re.compile(r"\[(?:[\w.-]+:)?(?:error|crit|alert|emerg)\]"),
    re.compile(r"AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:"),
    re.compile(r"exit signal"),  # a child crashed (AH00052)
]

MPM_CONF = {
    "event": """
StartServers 2
ServerLimit 4
ThreadsPerChild 10
MinSpareThreads 10
MaxSpareThreads 30
MaxRequestWorkers 40
""",
    "worker": """
StartServers 2
ServerLimit 4
ThreadsPerChild 10
MinSpareThreads 10
MaxSpareThreads 30
MaxRequestWorkers 40
""",
    "prefork": """
StartServers 3
MinSpareServers 3
MaxSpareServers 10
ServerLimit 50
MaxRequestWorkers 50
""",
}

WS_LOCATIONS = """
<Location /echo>
    SetHandler websocket
    WebSocketHandler {echo}
</Location>
<Location /echo-small>
    SetHandler websocket
    WebSocketHandler {echo}
    WebSocketMaxMessageSize {small}
</Location>
# merge: an outer limit, an inner override, an inner that inherits
<Location /lim>
    SetHandler websocket
    WebSocketHandler {echo}
    WebSocketMaxMessageSize 2048
</Location>
<Location /lim/inner>
    WebSocketMaxMessageSize 512
</Location>
<Location /denied>
    SetHandler websocket
    WebSocketHandler {echo}
    Require all denied
</Location>
<Location /auth>
    SetHandler websocket
    WebSocketHandler {echo}
    AuthType Basic
    AuthName "mws test"
    AuthBasicProvider file
    AuthUserFile {htpasswd}
    Require valid-user
</Location>
"""

CONF_TEMPLATE = """# generated by tests/integration/conftest.py
ServerRoot "{root}"
DefaultRuntimeDir "{root}/run"
PidFile "{root}/run/httpd.pid"
ServerName localhost
ServerAdmin root@localhost
User www-data
Group www-data
Timeout 30
KeepAlive On
KeepAliveTimeout 5

LoadModule mpm_{mpm}_module {modules}/mod_mpm_{mpm}.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule authz_host_module {modules}/mod_authz_host.so
LoadModule authz_user_module {modules}/mod_authz_user.so
LoadModule authn_core_module {modules}/mod_authn_core.so
LoadModule authn_file_module {modules}/mod_authn_file.so
LoadModule auth_basic_module {modules}/mod_auth_basic.so
LoadModule mime_module {modules}/mod_mime.so
LoadModule socache_shmcb_module {modules}/mod_socache_shmcb.so
LoadModule ssl_module {modules}/mod_ssl.so
LoadModule websocket_module {mod_ws}

<IfModule mpm_{mpm}_module>
{mpm_conf}
</IfModule>

ErrorLog "{root}/logs/error_log"
LogLevel {loglevel}
LogFormat "%h %l %u %t \\"%r\\" %>s %b \\"%{{Upgrade}}i\\"" mws
CustomLog "{root}/logs/access_log" mws

TypesConfig /etc/mime.types
Listen 127.0.0.1:{http_port}
Listen 127.0.0.1:{https_port}

DocumentRoot "{docroot}"
<Directory />
    AllowOverride None
    Require all denied
</Directory>
<Directory "{docroot}">
    Require all granted
</Directory>
{locations}
SSLSessionCache "shmcb:{root}/run/ssl_scache(512000)"
<VirtualHost 127.0.0.1:{https_port}>
    ServerName localhost
    SSLEngine on
    SSLCertificateFile "{root}/ssl/cert.pem"
    SSLCertificateKeyFile "{root}/ssl/key.pem"
</VirtualHost>
{extra}
"""


def _alive(pid):
    """pid runs (a zombie nobody reaps, as an orphan in a container whose
    init does not reap, has ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _mkdir(path):
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o755)
    return path


class MwsEnv:
    host = "127.0.0.1"

    def __init__(self, mpm, tls_files):
        self.mpm = mpm
        self.root = tempfile.mkdtemp(prefix="mws-%s-" % mpm)
        os.chmod(self.root, 0o755)
        self.docroot = _mkdir(os.path.join(self.root, "htdocs"))
        self.logs = _mkdir(os.path.join(self.root, "logs"))
        self.run_dir = _mkdir(os.path.join(self.root, "run"))
        self.ssl_dir = _mkdir(os.path.join(self.root, "ssl"))
        self.conf_path = os.path.join(self.root, "httpd.conf")
        self.error_log = os.path.join(self.logs, "error_log")
        self.access_log = os.path.join(self.logs, "access_log")
        self.pid_file = os.path.join(self.run_dir, "httpd.pid")
        self.htpasswd = os.path.join(self.root, "htpasswd")
        self.http_port = free_port()
        self.https_port = free_port()
        while self.https_port == self.http_port:
            self.https_port = free_port()
        self.cert_pem, key_pem = tls_files
        shutil.copy(self.cert_pem, os.path.join(self.ssl_dir, "cert.pem"))
        shutil.copy(key_pem, os.path.join(self.ssl_dir, "key.pem"))
        os.chmod(os.path.join(self.ssl_dir, "cert.pem"), 0o644)
        os.chmod(os.path.join(self.ssl_dir, "key.pem"), 0o600)
        with open(os.path.join(self.docroot, "index.html"), "wb") as f:
            f.write(INDEX_HTML)
        os.chmod(os.path.join(self.docroot, "index.html"), 0o644)
        r = subprocess.run(["htpasswd", "-cb", self.htpasswd, AUTH_USER, AUTH_PASS],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        os.chmod(self.htpasswd, 0o644)
        self.pid = None
        self._allowed = []
        self.log_offset = 0
        self.pending_errors = []  # found while stopping, reported by the next check

    # config -----------------------------------------------------------------

    def conf_text(self, extra="", locations=None):
        loglevel = "info"
        if os.environ.get("MWS_TRACE"):
            loglevel += " websocket:trace8"
        if locations is None:
            locations = WS_LOCATIONS.format(echo=MOD_ECHO, small=SMALL_LIMIT,
                                            htpasswd=self.htpasswd)
        return CONF_TEMPLATE.format(
            root=self.root, mpm=self.mpm, modules=HTTPD_MODULES, mod_ws=MOD_WS,
            mpm_conf=MPM_CONF[self.mpm], loglevel=loglevel,
            http_port=self.http_port, https_port=self.https_port,
            docroot=self.docroot, locations=locations, extra=extra)

    def write_conf(self, extra="", locations=None, path=None):
        path = path or self.conf_path
        with open(path, "w") as f:
            f.write(self.conf_text(extra, locations))
        os.chmod(path, 0o644)
        return path

    def check_conf(self, path=None):
        """`apache2 -t` on a config; returns the CompletedProcess."""
        return subprocess.run([HTTPD, "-f", path or self.conf_path, "-t"],
                              capture_output=True, text=True, timeout=60)

    # process ----------------------------------------------------------------

    def start(self, timeout=None):
        timeout = START_TIMEOUT if timeout is None else timeout
        r = self.check_conf()
        if r.returncode != 0:
            raise RuntimeError("apache2 -t failed (%d):\n%s%s" % (r.returncode, r.stdout, r.stderr))
        log_start = self._log_size()
        r = subprocess.run([HTTPD, "-f", self.conf_path, "-k", "start"],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            self.log_offset = self._log_size()
            raise RuntimeError("apache2 -k start failed (%d):\n%s%s\n%s" % (
                r.returncode, r.stdout, r.stderr, self._log_tail(log_start)))
        deadline = time.monotonic() + timeout
        while True:
            if self._answers(self.http_port) and self._answers(self.https_port) \
                    and os.path.exists(self.pid_file):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("httpd did not come up on %d/%d:\n%s" % (
                    self.http_port, self.https_port, self._log_tail(log_start)))
            time.sleep(0.05)
        with open(self.pid_file) as f:
            self.pid = int(f.read().strip())
        bad = self.new_log_errors(reset=True)
        if bad:
            raise RuntimeError("httpd start logged errors:\n" + "\n".join(bad))

    def _answers(self, port):
        try:
            s = socket.create_connection((self.host, port), timeout=0.5)
            s.close()
            return True
        except OSError:
            return False

    def stop(self, timeout=None):
        timeout = max(30.0, 2 * START_TIMEOUT) if timeout is None else timeout
        if self.pid is None:
            return
        subprocess.run([HTTPD, "-f", self.conf_path, "-k", "stop"],
                       capture_output=True, text=True, timeout=60)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(self.pid):
                break
            time.sleep(0.05)
        else:
            try:
                os.kill(self.pid, signal.SIGKILL)  # the parent we started
            except ProcessLookupError:
                pass
        self.pid = None
        # children that crashed or reported errors while stopping
        self.pending_errors += self.new_log_errors(reset=True)

    def restart(self, extra="", locations=None):
        """Stop, rewrite httpd.conf (base locations unless given) and start."""
        self.stop()
        self.write_conf(extra, locations)
        self.start()

    # logs ---------------------------------------------------------------------

    def _log_size(self):
        try:
            return os.path.getsize(self.error_log)
        except OSError:
            return 0

    def _log_tail(self, offset):
        try:
            with open(self.error_log, "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return "(no error log)"

    def allow_error(self, pattern):
        """Allow error log lines matching pattern (regex) in the current test."""
        self._allowed.append(re.compile(pattern))

    def new_log_errors(self, reset=True):
        """Error-log lines since the last check that match ERROR_PATTERNS and
        no allowed pattern."""
        try:
            with open(self.error_log, "rb") as f:
                f.seek(self.log_offset)
                data = f.read()
        except OSError:
            data = b""
        # only whole lines; a line being written now is looked at next time
        cut = data.rfind(b"\n") + 1
        bad = []
        for line in data[:cut].decode("utf-8", "replace").splitlines():
            if any(p.search(line) for p in ERROR_PATTERNS) and \
                    not any(a.search(line) for a in self._allowed):
                bad.append(line)
        if reset:
            self.log_offset += cut
        return bad

    def error_log_since(self, offset):
        return self._log_tail(offset)

    def access_lines(self):
        try:
            with open(self.access_log, encoding="utf-8", errors="replace") as f:
                return f.read().splitlines()
        except OSError:
            return []

    def wait_access_lines(self, needle, count=1, timeout=10):
        """Poll the access log until `count` lines contain needle (the log is
        written when httpd finishes the request, after the WebSocket ends)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [ln for ln in self.access_lines() if needle in ln]
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    # clients --------------------------------------------------------------------

    @property
    def http_url(self):
        return "http://%s:%d" % (self.host, self.http_port)

    @property
    def https_url(self):
        return "https://localhost:%d" % self.https_port

    def ws_url(self, path="/echo"):
        return "ws://%s:%d%s" % (self.host, self.http_port, path)

    def wss_url(self, path="/echo"):
        return "wss://localhost:%d%s" % (self.https_port, path)

    def client_ssl_ctx(self):
        ctx = ssl.create_default_context(cafile=self.cert_pem)
        ctx.check_hostname = True
        return ctx

    def ws(self, path="/echo", tls=False, **kw):
        """A raw WebSocket client after a successful handshake."""
        if tls:
            return wsclient.WsClient.connect(self.host, self.https_port, path,
                                             tls_ctx=self.client_ssl_ctx(), **kw)
        return wsclient.WsClient.connect(self.host, self.http_port, path, **kw)

    def conn(self, tls=False, timeout=wsclient.DEFAULT_TIMEOUT):
        if tls:
            return wsclient.Conn.open(self.host, self.https_port, tls_ctx=self.client_ssl_ctx(),
                                      timeout=timeout)
        return wsclient.Conn.open(self.host, self.http_port, timeout=timeout)

    def http(self, raw, tls=False, head=False, timeout=wsclient.DEFAULT_TIMEOUT):
        port = self.https_port if tls else self.http_port
        return wsclient.http_exchange(self.host, port, raw,
                                      tls_ctx=self.client_ssl_ctx() if tls else None,
                                      timeout=timeout, head=head)

    def upgrade(self, path="/echo", method="GET", http_version="HTTP/1.1", tls=False, **kw):
        """Send a (possibly broken) upgrade request; return the response.
        kw go to wsclient.upgrade_headers (key, version, upgrade, ...)."""
        raw = wsclient.build_request(method, path, host="localhost",
                                     headers=wsclient.upgrade_headers(**kw),
                                     version=http_version)
        return self.http(raw, tls=tls)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return cert, key


def _require_build():
    missing = [p for p in (MOD_WS, MOD_ECHO) if not os.path.exists(p)]
    if missing:
        pytest.fail("module not built, missing: %s (set MWS_BUILD_DIR or run "
                    "autoreconf -fi && ./configure && make)" % ", ".join(missing),
                    pytrace=False)


@pytest.fixture(scope="session", params=MPMS)
def env(request, tls_files):
    _require_build()
    e = MwsEnv(request.param, tls_files)
    e.write_conf()
    try:
        e.start()
    except Exception:
        e.stop()
        raise
    yield e
    e._allowed = []
    e.stop()
    bad, e.pending_errors = e.pending_errors, []
    if os.environ.get("MWS_KEEP") or bad:
        sys.stderr.write("\nmws server root kept: %s\n" % e.root)
    else:
        shutil.rmtree(e.root, ignore_errors=True)
    if bad:
        pytest.fail("error log at server stop (%s):\n%s" % (e.mpm, "\n".join(bad)),
                    pytrace=False)


@pytest.fixture(autouse=True)
def _check_error_log(request):
    """Fail a test whose run added an unexpected error to the error log."""
    if "env" not in request.fixturenames:
        yield
        return
    e = request.getfixturevalue("env")
    e._allowed = []
    before = e.pending_errors + e.new_log_errors(reset=True)
    e.pending_errors = []
    prev, e.last_test = getattr(e, "last_test", None), request.node.nodeid
    if before:  # logged after the previous test's check (e.g. a late crash)
        pytest.fail("error log gained lines after %s ended:\n%s" % (prev, "\n".join(before)),
                    pytrace=False)
    for m in request.node.iter_markers("allow_errors"):
        for p in m.args:
            e.allow_error(p)
    reports = sanitizer_reports()
    yield
    bad = e.pending_errors + (e.new_log_errors(reset=True) if e.pid is not None else [])
    e.pending_errors = []
    e._allowed = []
    if bad:
        pytest.fail("error log gained unexpected lines:\n" + "\n".join(bad), pytrace=False)
    found = new_sanitizer_reports(reports)
    if found:
        pytest.fail("sanitizer report(s):\n" + "\n".join(found), pytrace=False)


def pytest_configure(config):
    config.addinivalue_line("markers", "allow_errors(*regex): error-log lines this test may cause")


def pytest_sessionfinish(session, exitstatus):
    """With MWS_SANITIZER_LOG_DIR, any report file (also one written while a
    server stopped, after the last per-test check) fails the run."""
    found = new_sanitizer_reports({})
    if found:
        sys.stderr.write("\nsanitizer reports in %s:\n%s\n" % (SANITIZER_LOG_DIR,
                                                               "\n".join(found)))
        session.exitstatus = 1
