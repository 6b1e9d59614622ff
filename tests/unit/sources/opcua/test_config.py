"""The OPC UA kind's config: node ids, keys of other kinds, security, secrets, and the extra
it needs. No server: what ``check`` says before anything connects."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config
from agent.sources.opcua.nodes import parse_node

HEAD = """
[agent]
name = "OPC UA line"

[[sources]]
name = "line1"
protocol = "opcua"
endpoint = "opc.tcp://10.0.0.20:4840"
{extra}
  [[sources.variables]]
  name = "oven_temp"
  node = "{node}"
  type = "float"
  {more}
"""


def problems(
    tmp_path: Path, extra: str = "", node: str = "ns=3;s=Oven.Temp", more: str = ""
) -> list[str]:
    path = tmp_path / "agent.toml"
    path.write_text(HEAD.format(extra=extra, node=node, more=more))
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    return info.value.problems


@pytest.mark.parametrize(
    ("text", "namespace", "uri", "kind", "identifier"),
    [
        ("ns=3;s=Oven.Temp", 3, None, "s", "Oven.Temp"),
        ("ns=2;i=1042", 2, None, "i", "1042"),
        ("i=2258", 0, None, "i", "2258"),
        ("ns=4;g=72962b91-fa75-4ae6-8d28-b404dc7daf63", 4, None, "g", "72962b91-fa75-4ae6-8d28-b404dc7daf63"),
        ("ns=1;b=UmVjaXBl", 1, None, "b", "UmVjaXBl"),
        ("nsu=urn:acme:line1;s=A;B", 0, "urn:acme:line1", "s", "A;B"),
    ],
)  # fmt: skip
def test_node_ids_of_every_form(
    text: str, namespace: int, uri: str | None, kind: str, identifier: str
) -> None:
    ref = parse_node(text)
    assert (ref.namespace, ref.uri, ref.kind, ref.identifier) == (namespace, uri, kind, identifier)


@pytest.mark.parametrize(
    ("node", "says"),
    [
        ("Oven.Temp", "is not a node id"),
        ("ns=x;s=1", "ns= takes a namespace index 0..65535, not 'x'"),
        ("ns=2;i=abc", "i= takes a number"),
        ("ns=2;g=not-a-guid", "g= takes a GUID"),
        ("ns=2;b=***", "b= takes base64"),
        ("nsu=;s=x", "nsu= needs a namespace URI"),
        ("ns=2;s=", "identifier is empty"),
    ],
)
def test_a_bad_node_id_is_a_located_error(tmp_path: Path, node: str, says: str) -> None:
    [problem] = problems(tmp_path, node=node)
    assert problem.startswith("sources[0].variables[0] (oven_temp).node: ") and says in problem


def test_a_key_of_another_kind_is_unknown_and_says_whose_it_is(tmp_path: Path) -> None:
    found = problems(tmp_path, extra="unit_id = 3\nendpont = 1", more="width = 32")
    assert found == [
        "sources[0].variables[0] (oven_temp).width: unknown key (not part of the config"
        " schema): the node's DataType gives width and sign",
        "sources[0] (line1).unit_id: unknown key for protocol 'opcua' (unit_id is for modbus)",
        "sources[0] (line1).endpont: unknown key (not part of the config schema);"
        " did you mean 'endpoint'?",
    ]


def test_an_unknown_protocol_names_the_known_ones(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(HEAD.format(extra="", node="ns=2;i=1", more="").replace('"opcua"', '"opc-ua"'))
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert info.value.problems == [
        "sources[0] (line1).protocol: 'opc-ua' is not a protocol: one of 'modbus-tcp',"
        " 'modbus-rtu', 'modbus-rtu-over-tcp', 'opcua', 's7'; did you mean 'opcua'?"
    ]


def test_security_needs_a_pinned_server_certificate_that_exists(tmp_path: Path) -> None:
    assert problems(tmp_path, extra='security = "Sign"') == [
        "sources[0] (line1).server_certificate: required with security 'Sign': the server's"
        " certificate file, pinned (export it from the PLC's OPC UA settings)"
    ]
    found = problems(tmp_path, extra='security = "SignAndEncrypt"\nserver_certificate = "plc.der"')
    assert found == [f"sources[0] (line1).server_certificate: no such file: {tmp_path / 'plc.der'}"]


def test_the_password_is_a_secret_and_needs_a_user(tmp_path: Path) -> None:
    assert problems(tmp_path, extra='password = "s3cret-Pw"') == [
        "sources[0] (line1).password: given without username: give both, or neither"
    ]
    path = tmp_path / "agent.toml"
    path.write_text(
        HEAD.format(extra='username = "agent"\npassword = "s3cret-Pw"', node="i=1", more="")
    )
    config = load_config(path, environ={})
    assert "s3cret-Pw" in config.secrets()  # redacted wherever webhook keys are
    assert "s3cret-Pw" not in repr(config) and "s3cret-Pw" not in str(config.sources[0])


def test_without_the_extra_an_opcua_source_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "asyncua" else real(name, *a)
    )
    assert problems(tmp_path) == [
        "sources[0] (line1).protocol: 'opcua' needs the OPC UA extra, not installed here:"
        " pip install 'ixon-agent[opcua]'"
    ]


def test_an_endpoint_with_a_password_in_it_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    text = HEAD.format(extra="", node="i=1", more="")
    path.write_text(text.replace("opc.tcp://10.0.0.20:4840", "opc.tcp://agent:hunter2@plc:4840"))
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    [problem] = info.value.problems
    assert problem.startswith("sources[0] (line1).endpoint: must be opc.tcp://host[:port][/path]")
    assert "hunter2" not in str(info.value)
