"""What every source kind's config has in common, and what the rest of the agent may use
of a source or a variable whatever its protocol. Each protocol's folder subclasses
``SourceBase`` in its ``config`` module; ``agent.sources.kinds`` lists the kinds."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol, Self

from pydantic import Field

from agent.common.schema import Duration, Model, Severity


class Variable(Protocol):
    """A variable as alarms, formulas, tests and backtests see it, whatever locates it."""

    @property
    def name(self) -> str: ...
    @property
    def label(self) -> str | None: ...
    @property
    def type(self) -> str: ...
    @property
    def width(self) -> int | None: ...
    @property
    def signed(self) -> bool: ...
    @property
    def factor(self) -> float: ...
    @property
    def offset(self) -> float: ...
    @property
    def unit(self) -> str | None: ...
    @property
    def display_name(self) -> str: ...


class SourceBase(Model):
    """The keys every kind of source has. A kind adds its own (an unknown key elsewhere)
    and says where it is, what is secret in it, and what only the whole config shows."""

    #: the folder under ``agent/sources/`` that owns this kind
    KIND: ClassVar[str]
    #: the values of ``protocol`` this kind takes; the first is the default when absent
    PROTOCOLS: ClassVar[tuple[str, ...]]

    name: str = Field(pattern=r"^[a-z0-9_-]+$")
    protocol: str
    poll_interval: Duration = Field(default=1.0, gt=0)
    timeout: Duration = Field(default=1.0, gt=0)
    #: no answer for this long raises the source's built-in offline alarm; 0 turns it off
    offline_after: Duration = Field(default=30.0, ge=0)
    offline_severity: Severity = "high"

    if TYPE_CHECKING:  # each kind declares its own list, of its own variables
        variables: Sequence[Variable]

    @property
    def address(self) -> str:
        """Where the device is, for people: ``127.0.0.1:5020``, ``opc.tcp://plc:4840``."""
        raise NotImplementedError

    @property
    def describe(self) -> str:
        """The address and whatever else tells this device from its neighbours."""
        return self.address

    def with_paths(self, folder: Path, state_dir: Path) -> Self:
        """This source with its relative paths made absolute: files the user names resolve
        against the config file's ``folder``, files the agent makes against ``state_dir``."""
        return self

    def on_loopback(self, port: int) -> Self:
        """This source pointed at its simulator on 127.0.0.1:``port`` (demo, live tests)."""
        raise NotImplementedError

    def secrets(self) -> list[str]:
        """Strings of this source never to be logged, shown or stored (a password)."""
        return []

    def problems(self, at: str, index: int, sources: Sequence[SourceBase]) -> Iterator[str]:
        """What the model alone cannot see: rules across variables or across sources.
        ``at`` is this source's place (``sources[2] (press)``)."""
        return iter(())

    def warnings(self, at: str) -> Iterator[str]:
        """What runs but is likely not what was meant (``check`` prints them)."""
        return iter(())
