"""Configuration checks with `apache2 -t` (no server is started)."""
import shutil

import pytest

import conftest


@pytest.fixture(scope="module")
def cenv(tls_files):
    conftest._require_build()
    e = conftest.MwsEnv("event", tls_files)
    yield e
    shutil.rmtree(e.root, ignore_errors=True)


def _check(cenv, locations, name):
    path = cenv.write_conf(locations=locations, path="%s/%s.conf" % (cenv.root, name))
    return cenv.check_conf(path)


def test_mws_050_01_base_config_ok(cenv):
    path = cenv.write_conf(path=cenv.root + "/base.conf")
    r = cenv.check_conf(path)
    assert r.returncode == 0, r.stderr
    assert "Syntax OK" in r.stdout + r.stderr


def test_mws_050_02_missing_handler_file(cenv):
    missing = cenv.root + "/no-such-handler.so"
    r = _check(cenv, "<Location /x>\nSetHandler websocket\nWebSocketHandler %s\n</Location>\n"
               % missing, "missing")
    assert r.returncode != 0
    assert "no-such-handler.so" in r.stderr, r.stderr


def test_mws_050_03_not_a_handler(cenv):
    # a shared object without the handler entry symbol (an httpd module)
    r = _check(cenv, "<Location /x>\nSetHandler websocket\nWebSocketHandler %s/mod_echo.so\n"
               "</Location>\n" % conftest.HTTPD_MODULES, "nothandler")
    assert r.returncode != 0
    assert "mod_echo.so" in r.stderr, r.stderr


@pytest.mark.parametrize("value", ["abc", "-1", "12x", ""])
def test_mws_050_04_bad_max_message_size(cenv, value):
    r = _check(cenv, "<Location /x>\nSetHandler websocket\nWebSocketHandler %s\n"
               "WebSocketMaxMessageSize \"%s\"\n</Location>\n" % (conftest.MOD_ECHO, value),
               "badsize")
    assert r.returncode != 0, r.stdout + r.stderr
    assert "WebSocketMaxMessageSize" in r.stderr, r.stderr


def test_mws_050_05_max_message_size_server_context(cenv):
    path = cenv.write_conf(extra="WebSocketMaxMessageSize 4096\n", path=cenv.root + "/srv.conf")
    r = cenv.check_conf(path)
    assert r.returncode == 0, r.stderr
