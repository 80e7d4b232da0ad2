"""httpd's own request limits apply to the opening handshake: an upgrade
whose header lines, header count or request line are over LimitRequest*
never reaches the module (400 / 414), and nothing is upgraded."""
import wsclient


def _upgrade(env, path="/echo", extra=()):
    headers = wsclient.upgrade_headers()
    headers = list(headers) + list(extra)
    raw = wsclient.build_request("GET", path, host="localhost", headers=headers)
    return env.http(raw)


def test_mws_1140_01_field_too_long_400(env):
    # LimitRequestFieldSize defaults to 8190 bytes
    env.allow_error(r"AH00561")   # core: field exceeds server limit
    resp = _upgrade(env, extra=[("X-Big", "a" * 9000)])
    assert resp.status == 400, resp
    assert resp.header("Sec-WebSocket-Accept") is None


def test_mws_1140_02_too_many_fields_400(env):
    # LimitRequestFields defaults to 100
    env.allow_error(r"AH00563")   # core: too many request header fields
    resp = _upgrade(env, extra=[("X-F%d" % i, "v") for i in range(120)])
    assert resp.status == 400, resp
    assert resp.header("Sec-WebSocket-Accept") is None


def test_mws_1140_03_request_line_too_long_414(env):
    # LimitRequestLine defaults to 8190 bytes
    env.allow_error(r"AH00565")   # core: request line too long
    resp = _upgrade(env, path="/echo?" + "q" * 9000)
    assert resp.status == 414, resp


def test_mws_1140_04_within_limits_upgrades(env):
    resp = _upgrade(env, extra=[("X-Big", "a" * 8000)] +
                    [("X-F%d" % i, "v") for i in range(80)])
    assert resp.status == 101, resp
