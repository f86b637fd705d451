from __future__ import annotations

import os
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


def test_every_commented_example_in_the_default_file_is_valid(tmp_path: Path) -> None:
    """Uncommenting an optional setting's example line gives a configuration that loads."""
    lines = default_config_text().splitlines()
    examples = [i for i, line in enumerate(lines)
                if line.startswith("# ") and line[2:].split(" = ")[0].split(".")[0]
                in NodeConfig.model_fields]
    assert len(examples) >= 4
    for i in examples:
        edited = lines[:i] + [lines[i][2:]] + lines[i + 1:]
        (tmp_path / "trustchain.toml").write_text("\n".join(edited) + "\n")
        load_config(tmp_path, environ={})


def test_ca_workers_default_to_one_fewer_than_the_cpus(tmp_path: Path) -> None:
    assert NodeConfig().worker_count() == max(0, len(os.sched_getaffinity(0)) - 1)
    assert NodeConfig(ca_workers=0).worker_count() == 0
    assert NodeConfig(ca_workers=3).worker_count() == 3


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


def test_ct_logs_by_name_or_as_expiry_shards(tmp_path: Path) -> None:
    assert [log.name for log in load_config(tmp_path, environ={}).ct_logs] == ["a", "b"]
    env = {"TRUSTCHAIN_CT_LOGS": "x, y, z"}
    assert [log.name for log in load_config(tmp_path, environ=env).ct_logs] == ["x", "y", "z"]
    (tmp_path / "trustchain.toml").write_text(
        'ct_tiles_dir = "/srv/ct"\n'
        '[[ct_logs]]\nname = "a2027h1"\nnot_after_start = 2027-01-01T00:00:00Z\n'
        'not_after_end = 2027-07-01T00:00:00Z\n'
        '[[ct_logs]]\nname = "a2027h2"\nnot_after_start = 2027-07-01T00:00:00Z\n')
    config = load_config(tmp_path, environ={})
    first, second = config.ct_logs
    assert (first.name, first.not_after_start.month, first.not_after_end.month) == (  # type: ignore[union-attr]
        "a2027h1", 1, 7)
    assert (second.not_after_start.month, second.not_after_end) == (7, None)  # type: ignore[union-attr]
    assert config.ct_tiles_dir == Path("/srv/ct")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('ct_logs = ["a", "a"]', "log names are listed more than once"),
        ('ct_logs = ["A/b"]', "ct_logs: String should match pattern"),
        ("ct_logs = []", "ct_logs: List should have at least 1 item"),
        ('[[ct_logs]]\nname = "s"\nnot_after_start = 2027-07-01T00:00:00Z\n'
         "not_after_end = 2027-01-01T00:00:00Z", "not_after_start must be before not_after_end"),
        ('[[ct_logs]]\nname = "s"\nnot_after_start = 2027-07-01T00:00:00', "timezone"),
        ('[[ct_logs]]\nname = "s"\nshard = 1', "unknown setting 'ct_logs\\[0\\].shard'"),
    ],
)
def test_bad_ct_logs_are_refused(tmp_path: Path, toml: str, message: str) -> None:
    (tmp_path / "trustchain.toml").write_text(toml + "\n")
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path, environ={})
