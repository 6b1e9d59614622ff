"""The OPC UA kind of source: an endpoint, its security, and variables by node id. The
node's DataType gives width and sign, so a variable says only what alarms compare."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationInfo,
    field_validator,
)
from pydantic.dataclasses import dataclass as pydantic_dataclass

from agent.common.schema import Duration, ValueType, check_scaling, item_place
from agent.sources.opcua.nodes import parse_node
from agent.sources.schema import SourceBase

Security = Literal["None", "Sign", "SignAndEncrypt"]
Policy = Literal["Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss"]

#: the agent's own certificate and key, relative to state_dir: one identity for every
#: OPC UA source, so a PLC's trust list holds one entry for this agent
_ENDPOINT = re.compile(r"^opc\.tcp://[A-Za-z0-9._\-\[\]]+(:\d{1,5})?(/\S*)?$")
CERTIFICATE = Path("opcua/client.der")
PRIVATE_KEY = Path("opcua/client.pem")


@pydantic_dataclass(frozen=True, slots=True, config=ConfigDict(extra="forbid"))
class OpcUaVariable:
    """A variable at a node. Slotted, as Modbus variables are: thousands live all along."""

    #: keys of other kinds' variables that mean something here, with what to do instead
    NOT_HERE: ClassVar[dict[str, str]] = {
        "width": "the node's DataType gives width and sign",
        "signed": "the node's DataType gives width and sign",
        "address": 'an OPC UA variable is at a node: node = "ns=2;s=Name"',
    }

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    node: str = Field()
    type: ValueType = Field()
    label: str | None = None
    factor: float = 1.0
    offset: float = 0.0
    unit: str | None = None

    @field_validator("node")
    @classmethod
    def _node_id(cls, value: str) -> str:
        parse_node(value)
        return value.strip()

    @field_validator("factor", "offset")
    @classmethod
    def _scaling_needs_number(cls, value: float, info: ValidationInfo) -> float:
        return check_scaling(info.data.get("type"), info.field_name or "", value)

    @property
    def display_name(self) -> str:
        return self.label or self.name

    @property
    def width(self) -> int | None:
        """The node's DataType has it; alarms on bits take up to 64."""
        return 64 if self.type == "int" else None

    @property
    def signed(self) -> bool:
        return True

    @classmethod
    def model_validate(cls, data: Mapping[str, Any]) -> OpcUaVariable:
        return _VARIABLE.validate_python(data)


_VARIABLE: TypeAdapter[OpcUaVariable] = TypeAdapter(OpcUaVariable)


class OpcUaSource(SourceBase):
    KIND: ClassVar[str] = "opcua"
    PROTOCOLS: ClassVar[tuple[str, ...]] = ("opcua",)

    protocol: Literal["opcua"] = "opcua"
    endpoint: str
    security: Security = "None"
    policy: Policy = "Basic256Sha256"
    #: the agent's certificate (DER) and key (PEM), relative to state_dir; made when absent
    certificate: Path = CERTIFICATE
    private_key: Path = PRIVATE_KEY
    #: the server's certificate (DER or PEM), pinned; relative to the config file's folder
    server_certificate: Path | None = None
    username: str | None = None
    password: SecretStr | None = None
    #: nodes per Read call; 0: the server's OperationLimits.MaxNodesPerRead, read at connect
    max_nodes_per_read: int = Field(default=0, ge=0)
    timeout: Duration = Field(default=5.0, gt=0)
    variables: list[OpcUaVariable] = Field(default_factory=list)

    @property
    def address(self) -> str:
        return self.endpoint

    @property
    def describe(self) -> str:
        return f"{self.endpoint}, security {self.security}"

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        # the message must not echo it: a URL may carry a user and password
        if not _ENDPOINT.match(value):
            raise ValueError(
                "must be opc.tcp://host[:port][/path] (a user and password go in username"
                " and password)"
            )
        return value

    def on_loopback(self, port: int) -> Self:
        """(The simulator offers no security: a live test checks alarms, not certificates.)"""
        path = urlsplit(self.endpoint).path
        endpoint = f"opc.tcp://127.0.0.1:{port}{path}"
        return self.model_copy(update={"endpoint": endpoint, "security": "None"})

    def secrets(self) -> list[str]:
        return [self.password.get_secret_value()] if self.password else []

    def with_paths(self, folder: Path, state_dir: Path) -> Self:
        update: dict[str, Path] = {
            "certificate": state_dir / self.certificate,
            "private_key": state_dir / self.private_key,
        }
        if self.server_certificate is not None:
            update["server_certificate"] = folder / self.server_certificate
        return self.model_copy(update=update)

    def problems(self, at: str, index: int, sources: Sequence[SourceBase]) -> Iterator[str]:
        if self.security != "None" and self.server_certificate is None:
            yield (
                f"{at}.server_certificate: required with security {self.security!r}: the"
                " server's certificate file, pinned (export it from the PLC's OPC UA settings)"
            )
        server = self.server_certificate
        if server is not None and not _is_file(server):
            yield f"{at}.server_certificate: no such file: {server}"
        if self.password is not None and not self.username:
            yield f"{at}.password: given without username: give both, or neither"
        if importlib.util.find_spec("asyncua") is None:
            yield (
                f"{at}.protocol: 'opcua' needs the OPC UA extra, not installed here:"
                " pip install 'ixon-agent[opcua]'"
            )

    def warnings(self, at: str) -> Iterator[str]:
        """Two variables on one node: usually a copied line whose node was not changed."""
        where = at.split(" (")[0] + ".variables"
        nodes: dict[str, int] = {}
        for v_index, variable in enumerate(self.variables):
            first = nodes.setdefault(variable.node, v_index)
            if first != v_index:
                yield (
                    f"{item_place(where, v_index, variable)}.node: {variable.node} is"
                    f" {where}[{first}]'s node too; check the node ids"
                )


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name too long, a loop of links
        return False
