"""HAProxy in front of several instances (fleetvote.testbed.balancer): its configuration, checked
by HAProxy itself (`haproxy -c`), the committed one for compose's balanced profile, and the
profile's wiring. The failover run itself (two instances, load, SIGTERM and SIGKILL) is `make
test-balancer`: half a minute of load, too long for make test."""

from __future__ import annotations

import pytest

from conftest import ROOT, need_tool
from test_deploy import load_compose

CFG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
COMPOSE_SERVERS = {"fleetvote-a": "fleetvote-a:8000", "fleetvote-b": "fleetvote-b:8000"}


def test_balancer_config_health_checks_readyz_and_retries_elsewhere(tmp_path):
    from fleetvote.testbed.balancer import check_config, haproxy_config

    need_tool("haproxy")
    text = haproxy_config({"a": "127.0.0.1:8001", "b": "127.0.0.1:8002"}, "127.0.0.1:18080",
                          stats_socket=str(tmp_path / "s.sock"))
    check_config(text, tmp_path)  # HAProxy's own parser accepts it
    assert "option httpchk GET /readyz" in text and "http-check expect status 200" in text
    assert "retry-on conn-failure empty-response" in text and "option redispatch" in text
    assert "server a 127.0.0.1:8001" in text and "server b 127.0.0.1:8002" in text
    assert "default-server check inter 500ms fall 2 rise 2" in text


def test_balancer_config_check_reports_what_haproxy_refuses(tmp_path):
    from fleetvote.errors import ConfigError
    from fleetvote.testbed.balancer import check_config, haproxy_config

    need_tool("haproxy")
    text = haproxy_config({"a": "127.0.0.1:8001"}).replace("balance leastconn", "balance fastest-please")
    with pytest.raises(ConfigError, match="(?s)haproxy -c refused.*balance only supports"):
        check_config(text, tmp_path)
    with pytest.raises(ConfigError, match="at least one instance"):
        haproxy_config({})


def test_committed_haproxy_cfg_is_the_generated_one_for_the_compose_profile(tmp_path):
    from fleetvote.testbed.balancer import check_config, haproxy_config

    want = haproxy_config(COMPOSE_SERVERS, ":8080", dns="127.0.0.11:53")
    assert CFG.read_text() == want, ("regenerate: python -m fleetvote.testbed.balancer --config "
                                     "fleetvote-a=fleetvote-a:8000 fleetvote-b=fleetvote-b:8000 --bind :8080 "
                                     "--dns 127.0.0.11:53 > deploy/haproxy/haproxy.cfg")
    need_tool("haproxy")
    check_config(want, tmp_path)  # names that do not resolve here leave servers down, not an error


def test_compose_balanced_profile_puts_two_instances_behind_the_balancer():
    services = load_compose()["services"]
    lb = services["balancer"]
    assert lb["profiles"] == ["balanced"] and set(lb["depends_on"]) == set(COMPOSE_SERVERS)
    assert "./deploy/haproxy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in lb["volumes"]
    assert lb["ports"][0].endswith(":8080") and lb["ports"][0].startswith("127.0.0.1:")
    for name, addr in COMPOSE_SERVERS.items():
        svc = services[name]
        assert svc["profiles"] == ["balanced"] and addr.split(":")[1] in svc["expose"]
        assert "ports" not in svc  # reached through the balancer only
