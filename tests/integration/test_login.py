"""The status listener's login (issue 27): basic auth against bcrypt hashes, the health
paths open, failed logins throttled and logged without the password, HTTPS."""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from agent.config import ConfigError, config_warnings, load_config
from agent.observe.auth import MAX_FAILURES, hash_password
from agent.runtime.service import Agent
from simulators.modbus_device import ModbusDeviceSimulator
from tests.conftest import write_config

PASSWORD = "s3cret-Panel-pw"


def with_users(tmp_path: Path, port: int, extra: str = "") -> Path:
    hashed = hash_password(PASSWORD, rounds=4)  # (12 in production: bcrypt's ~70 ms)
    path = write_config(tmp_path, port=port)
    text = path.read_text().replace(
        "[status]\nport = 0", f'[status]\nport = 0\n{extra}\n  [status.users]\n  jane = "{hashed}"'
    )
    path.write_text(text)
    return path


@pytest.fixture
async def agent(tmp_path: Path, machine: ModbusDeviceSimulator) -> AsyncIterator[Agent]:
    running = Agent(load_config(with_users(tmp_path, machine.port), environ={}))
    await running.start()
    yield running
    await running.stop()


async def test_everything_but_health_needs_a_login(agent: Agent) -> None:
    assert agent.status is not None
    url = agent.status.url
    async with httpx.AsyncClient() as client:
        for path in ("/", "/metrics"):
            reply = await client.get(url + path)
            assert reply.status_code == 401, path
            assert reply.headers["WWW-Authenticate"].startswith('Basic realm="ixon-agent"')
        for path in ("/healthz", "/readyz"):
            assert (await client.get(url + path)).status_code in (200, 503), path
        for path in ("/", "/metrics", "/"):
            reply = await client.get(url + path, auth=("jane", PASSWORD))
            assert reply.status_code == 200, path
    assert agent.status.login.bcrypt_checks == 1  # checked once, then remembered


async def test_failed_logins_are_throttled_and_logged_without_the_password(
    agent: Agent, caplog: pytest.LogCaptureFixture
) -> None:
    assert agent.status is not None
    url = agent.status.url
    async with httpx.AsyncClient() as client:
        with caplog.at_level(logging.WARNING, logger="agent.status"):
            for n in range(MAX_FAILURES):
                reply = await client.get(url, auth=("jane", f"wrong-{n}-{PASSWORD}"))
                assert reply.status_code == 401
            blocked = await client.get(url, auth=("jane", PASSWORD))  # even the right one
        assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
        assert (await client.get(url + "/healthz")).status_code == 200  # health stays open
    lines = [r.getMessage() for r in caplog.records if "failed login" in r.getMessage()]
    assert lines and "user 'jane'" in lines[0] and "127.0.0.1" in lines[0]
    assert not any(PASSWORD in line for line in caplog.text.splitlines())


def certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made by the test."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ixon-agent test")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "panel.crt", directory / "panel.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_https_with_a_certificate_the_test_makes(
    tmp_path: Path, machine: ModbusDeviceSimulator
) -> None:
    pytest.importorskip("cryptography")
    cert, _ = certificate(tmp_path)
    path = with_users(tmp_path, machine.port, 'tls_cert = "panel.crt"\ntls_key = "panel.key"')
    agent = Agent(load_config(path, environ={}))
    await agent.start()
    try:
        assert agent.status is not None and agent.status.url.startswith("https://")
        import ssl

        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=cert)) as client:
            reply = await client.get(agent.status.url + "/", auth=("jane", PASSWORD))
            assert reply.status_code == 200 and "Test line" in reply.text
        async with httpx.AsyncClient(verify=False) as plain:
            with pytest.raises(httpx.HTTPError):  # no plain HTTP on a TLS listener
                await plain.get(agent.status.url.replace("https://", "http://") + "/healthz")
    finally:
        await agent.stop()


def test_hash_password_and_a_hash_that_is_not_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from agent.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["hash-password", "jane"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith('jane = "$2b$12$') and PASSWORD not in line
    path = write_config(tmp_path)
    path.write_text(
        path.read_text().replace(
            "[status]\nport = 0", '[status]\nport = 0\n  [status.users]\n  jane = "hunter2hunter2"'
        )
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    [problem] = info.value.problems
    assert problem.startswith("status.users: user 'jane': not a bcrypt hash; make one with")
    assert "hunter2hunter2" not in str(info.value)


def test_bound_beyond_loopback_without_users_check_warns(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    path.write_text(
        path.read_text().replace("[status]\nport = 0", '[status]\nport = 0\nhost = "0.0.0.0"')
    )
    warnings = config_warnings(load_config(path, environ={}), environ={})
    assert any(
        w.startswith("status.host: 0.0.0.0 lets anyone who reaches this machine") for w in warnings
    )


async def test_the_health_command_works_over_https(
    tmp_path: Path, machine: ModbusDeviceSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("cryptography")
    from agent.cli import main

    certificate(tmp_path)
    path = with_users(tmp_path, machine.port, 'tls_cert = "panel.crt"\ntls_key = "panel.key"')
    config = load_config(path, environ={})
    agent = Agent(config)
    await agent.start()
    try:
        assert agent.status is not None
        port = agent.status.port
        path.write_text(path.read_text().replace("[status]\nport = 0", f"[status]\nport = {port}"))
        code = await asyncio.to_thread(main, ["health", "--config", str(path), "--live"])
        assert code == 0 and capsys.readouterr().out.startswith(
            f"https://127.0.0.1:{port}/healthz: ok"
        )
    finally:
        await agent.stop()
