from __future__ import annotations

from pathlib import Path

import pytest

from trustchain.config import NodeConfig, default_config_text, load_config
from trustchain.errors import ConfigError


def test_development_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path, environ={})
    assert config.listen == ["::1"]
    assert (config.dns_port, config.quic_port, config.https_port, config.http_port) == (
        8053, 8853, 8443, 8080,
    )


def test_default_file_round_trips(tmp_path: Path) -> None:
    (tmp_path / "trustchain.toml").write_text(default_config_text())
    assert load_config(tmp_path, environ={}) == NodeConfig()


def test_priority_file_then_environment_then_flags(tmp_path: Path) -> None:
    (tmp_path / "trustchain.toml").write_text('dns_port = 5300\nhttp_port = 5380\nquic_port = 5301\n')
    env = {"TRUSTCHAIN_HTTP_PORT": "6380", "TRUSTCHAIN_QUIC_PORT": "6301",
           "TRUSTCHAIN_LISTEN": "::1, 127.0.0.1"}
    config = load_config(tmp_path, {"quic_port": "7301", "https_port": None}, environ=env)
    assert config.dns_port == 5300  # file
    assert config.http_port == 6380  # environment beats file
    assert config.quic_port == 7301  # flag beats environment
    assert config.https_port == 8443  # None flag means "not given"
    assert config.listen == ["::1", "127.0.0.1"]


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ("dns_port = 70000", {}, "trustchain.toml: dns_port: Input should be less than or equal"),
        ("dns_prot = 53", {}, "unknown setting 'dns_prot'"),
        ("", {"TRUSTCHAIN_DNS_PORT": "fifty"}, "environment: TRUSTCHAIN_DNS_PORT"),
        ('listen = ["trust.example"]', {}, "'trust.example' is not an IP address"),
        ("https_port = 9000\nhttp_port = 9000", {}, "both use TCP port 9000"),
        ("dns_port = [", {}, "not valid TOML"),
        ('log_level = "loud"', {}, "log_level"),
    ],
)
def test_invalid_configuration_is_reported_with_its_source(
    tmp_path: Path, toml: str, env: dict[str, str], message: str
) -> None:
    (tmp_path / "trustchain.toml").write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, environ=env)
    assert message in str(info.value)


def test_same_port_for_udp_and_tcp_services_is_fine(tmp_path: Path) -> None:
    # QUIC is UDP and HTTPS is TCP: sharing a number is how production uses 443/853.
    assert load_config(tmp_path, {"quic_port": "8443"}, environ={}).quic_port == 8443


def test_port_zero_may_repeat(tmp_path: Path) -> None:
    config = load_config(tmp_path, {"dns_port": 0, "http_port": 0, "https_port": 0}, environ={})
    assert config.http_port == 0
