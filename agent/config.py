"""The agent's configuration: one TOML file, validated completely before anything runs.

Every problem is reported with its place in the file (``sources[0].variables[2].width``) so a
maintenance engineer can fix a config without reading code. Environment variables override
file values (``AGENT_SOURCES__0__HOST=10.0.0.5``); list items are addressed by index.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, get_args

import tomli
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
)
from pydantic.dataclasses import dataclass as pydantic_dataclass
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from agent.alarms.formula import FormulaError, compile_formula
from agent.common.hints import did_you_mean
from agent.common.ids import short_id
from agent.common.schema import (
    SEVERITY_RANK,
    Duration,
    Model,
    Severity,
    item_place,
    parse_duration,
)
from agent.sources.kinds import DEFAULT_PROTOCOL, MODELS, PROTOCOL_KIND, Source
from agent.sources.schema import SourceBase, Variable

__all__ = [  # besides what is defined here: the shared vocabulary, for the stages
    "SEVERITY_RANK",
    "Duration",
    "Severity",
    "Source",
    "SourceBase",
    "Variable",
    "item_place",
    "parse_duration",
]

ENV_PREFIX = "AGENT_"
ENV_DELIMITER = "__"
DEFAULT_CONFIG = "agent.toml"
#: the commented starter config, shipped in the package: ``ixon-agent init`` writes it, the
#: demo runs it; the repository's agent.toml is the same file
STARTER = Path(__file__).resolve().parent / "data" / "agent.toml"


@dataclasses.dataclass(frozen=True)
class Rate:
    """At most ``count`` sends per ``per`` seconds; ``count`` 0 means no limit ("none")."""

    count: int
    per: float

    def __str__(self) -> str:
        if not self.count:
            return "none"
        unit = {1.0: "s", 60.0: "min", 3600.0: "h"}.get(self.per)
        return f"{self.count}/{unit}" if unit else f"{self.count}/{self.per:g}s"


NO_LIMIT = Rate(0, 0.0)
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\S.*?)\s*$")
_RATE_UNITS = {"s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0}


def parse_rate(value: Any) -> Rate:
    """``"50/min"``, ``"10/s"``, ``"5/10s"`` or ``"none"``."""
    if isinstance(value, Rate):
        return value
    if isinstance(value, str) and value.strip().lower() == "none":
        return NO_LIMIT
    match = _RATE.match(value) if isinstance(value, str) else None
    if match:
        count, per = int(match.group(1)), match.group(2)
        with contextlib.suppress(ValueError):
            seconds = _RATE_UNITS.get(per) or parse_duration(per)
            if count > 0 and seconds > 0:
                return Rate(count, seconds)
    raise ValueError(
        f"{value!r} is not a rate: use sends per time, like '50/min', '10/s' or '5/10s', or 'none'"
    )


Condition = Literal["==", "!=", ">", ">=", "<", "<=", "between", "outside"]
NUMERIC_CONDITIONS = frozenset({">", ">=", "<", "<=", "between", "outside"})
Threshold = bool | float | str | tuple[float, float]


class AgentSection(Model):
    name: str = Field(min_length=1, max_length=255)
    public_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9]{12}$")
    company_id: str | None = Field(default=None, pattern=r"^(\d{4}-){4}\d{4}$")
    company_name: str | None = None
    state_dir: Path = Path("var")

    @property
    def agent_id(self) -> str:
        """The configured id, or one derived from the name so it is stable across restarts."""
        return self.public_id or short_id(self.name)


def _check_threshold(value: Any) -> Threshold | None:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list | tuple) and len(value) == 2:
        low, high = value
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
            if low > high:
                raise ValueError(f"[low, high] needs low <= high, got [{low}, {high}]")
            return (float(low), float(high))
    raise ValueError("threshold must be a number, true/false, a string, or [low, high]")


class Bit(Model):
    """One bit of an ``error_bits`` alarm: its text, and what it overrides of the alarm's."""

    text: str = Field(min_length=1, max_length=200)
    severity: Severity | None = None
    instructions: str | None = None


def _bit_texts(value: Any) -> Any:
    """``0 = "Overcurrent"`` is short for ``0 = { text = "Overcurrent" }``."""
    if isinstance(value, dict):
        return {k: {"text": v} if isinstance(v, str) else v for k, v in value.items()}
    return value


#: IXON's names of the alarm types (``AgentDataAlarm.type``); threshold and boolean are
#: both a plain condition here
AlarmType = Literal[
    "condition", "threshold", "boolean", "formula", "error_bits", "bit_pattern", "rate_of_change"
]


@pydantic_dataclass(frozen=True, slots=True, config=ConfigDict(extra="forbid"))
class Alarm:
    """A trigger: ``variable condition threshold``, an IXON postfix ``formula``, the bits of
    a fault word, a bit pattern, or a rate of change (``type``). A slotted dataclass, as
    ``Variable``: a config may hold 10k of them for as long as the agent runs.
    """

    name: str = Field(min_length=1, max_length=255)
    variable: str | None = Field(default=None, pattern=r"^[a-z0-9_-]+\.[a-z0-9_]+$")
    condition: Condition | None = None
    threshold: Annotated[Threshold | None, BeforeValidator(_check_threshold)] = None
    formula: str | None = None
    severity: Severity = "medium"
    on_delay: Duration = 0.0
    off_delay: Duration = 0.0
    deadband: float = Field(default=0.0, ge=0)
    instructions: str = ""
    #: flapping control: at most this many starts notified per window; ends always go out
    max_notifications: int = Field(default=20, ge=1)
    flap_window: Duration = Field(default=3600.0, gt=0)
    #: false: configured and checked, never evaluated (IXON's out of service)
    enabled: bool = True
    #: IXON's autoAcknowledge; false: an occurrence that ended stays "not acknowledged"
    #: until someone acknowledges it (``ixon-agent ack``)
    auto_acknowledge: bool = True
    type: AlarmType | None = None
    #: error_bits: bit number (0 = least significant) -> its text and overrides
    bits: Annotated[
        dict[Annotated[int, Field(ge=0, le=63)], Bit] | None, BeforeValidator(_bit_texts)
    ] = None
    #: bit_pattern: active while (value & mask) == pattern
    mask: int | None = Field(default=None, ge=0)
    pattern: int | None = Field(default=None, ge=0)
    #: rate_of_change: the change per ``per``, between the newest sample and the one
    #: ``window`` before it
    per: Duration | None = Field(default=None, gt=0)
    window: Duration | None = Field(default=None, gt=0)

    @property
    def form(self) -> str:
        """What kind of trigger: condition, formula, error_bits, bit_pattern, rate_of_change."""
        if self.type is None:
            return "formula" if self.formula is not None else "condition"
        return "condition" if self.type in ("threshold", "boolean") else self.type


class Webhook(Model):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    url: SecretUrl
    format: str = "ixon"  # a name in agent.formats.FORMATS
    user_id: str | None = None
    integration_key: SecretStr | None = None
    notify_ended: bool = True
    min_severity: Severity = "low"
    timeout: Duration = Field(default=10.0, gt=0)
    #: sends per time to the receiver's key; None: the format's default (ilert's limit
    #: for ilert's event paths, else none)
    rate_limit: Annotated[Rate | None, BeforeValidator(parse_rate)] = None


def _check_url(value: SecretStr) -> SecretStr:
    # The message must not echo the URL: it carries a key.
    if not re.match(r"^https?://[^/\s]+(/\S*)?$", value.get_secret_value()):
        raise ValueError("must be an http:// or https:// URL")
    return value


SecretUrl = Annotated[SecretStr, AfterValidator(_check_url)]


class OutboxSection(Model):
    """Bounds of the durable outbox."""

    max_pending: int = Field(default=10_000, ge=1)
    max_age: Duration = Field(default=86_400.0, gt=0)


class HeartbeatSection(Model):
    """A dead man's switch: ilert heartbeat monitors alert when these pings stop."""

    url: SecretUrl
    interval: Duration = Field(default=60.0, gt=0)
    timeout: Duration = Field(default=10.0, gt=0)
    method: Literal["GET", "POST", "HEAD"] = "GET"


_BCRYPT = re.compile(r"^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$")


def _check_users(users: dict[str, str]) -> dict[str, str]:
    for name, hashed in users.items():
        if not re.match(r"^[A-Za-z0-9_.@-]{1,64}$", name):
            raise ValueError(f"user name {name!r}: use 1 to 64 of A-Z a-z 0-9 _ . @ -")
        if not _BCRYPT.match(hashed):  # (the message must not echo it)
            raise ValueError(
                f"user {name!r}: not a bcrypt hash; make one with `ixon-agent hash-password {name}`"
            )
    return users


class StatusSection(Model):
    """One local HTTP listener: the status page, Prometheus metrics, health checks."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9108, ge=0, le=65535)
    #: user name -> bcrypt hash: with any, everything but /healthz and /readyz needs a login
    users: Annotated[dict[str, str], AfterValidator(_check_users)] = Field(default_factory=dict)
    #: HTTPS: a certificate chain and its key (PEM), both or neither; relative to the file
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @property
    def loopback(self) -> bool:
        return self.host in ("localhost", "::1") or self.host.startswith("127.")

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"


class Config(BaseSettings):
    """The whole agent.toml. Load it with :func:`load_config`, which reports every problem."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True)

    agent: AgentSection
    sources: list[Source] = Field(min_length=1)
    alarms: list[Alarm] = Field(default_factory=list)
    webhooks: list[Webhook] = Field(default_factory=list)
    outbox: OutboxSection = Field(default_factory=OutboxSection)
    heartbeat: HeartbeatSection | None = None
    status: StatusSection = Field(default_factory=StatusSection)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init_settings carries the file already merged with the environment (see load_config).
        return (init_settings,)

    #: ``variable()``'s index, with the list of sources it was made from (a copy of the
    #: config with other sources gets its own); dropped by ``forget_index`` once the
    #: alarms are compiled, so 50k variables do not keep a second map all along
    _index: tuple[list[Source], dict[str, Variable]] | None = PrivateAttr(None)
    _types: tuple[list[Source], dict[str, str]] | None = PrivateAttr(None)

    def variables(self) -> Iterator[tuple[str, Source, Variable]]:
        for source in self.sources:
            for variable in source.variables:
                yield f"{source.name}.{variable.name}", source, variable

    def variable(self, key: str) -> Variable:
        """A variable by ``source.name``: a dict lookup (a config may have 50k of them)."""
        index = self._index
        if index is None or index[0] is not self.sources:
            index = self._index = (self.sources, {k: v for k, _, v in self.variables()})
        return index[1][key]

    def variable_types(self) -> dict[str, str]:
        """``{"plc.oil_temp": "float", ...}``, made once: what formulas are checked against."""
        if self._types is None or self._types[0] is not self.sources:
            self._types = (self.sources, {key: v.type for key, _, v in self.variables()})
        return self._types[1]

    def forget_index(self) -> None:
        self._index = None
        self._types = None

    def secrets(self) -> list[str]:
        """Strings that must never reach a log line, an error, a file or a metric, nor any
        part of them (``agent.logs.Redactor`` finds the parts)."""
        found: list[str] = []
        urls = [w.url for w in self.webhooks] + ([self.heartbeat.url] if self.heartbeat else [])
        found += [url.get_secret_value() for url in urls]
        for webhook in self.webhooks:
            if webhook.integration_key:
                found.append(webhook.integration_key.get_secret_value())
        for source in self.sources:
            found += source.secrets()
        found += list(self.status.users.values())
        return sorted(set(found), key=len, reverse=True)


class ConfigError(Exception):
    """A config that cannot run; ``problems`` are ``place: message`` lines."""

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.path = Path(path)
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))

    def __str__(self) -> str:
        lines = [f"{self.path}: {len(self.problems)} problem(s)"]
        lines += [f"  {problem}" for problem in self.problems]
        return "\n".join(lines)


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``--config``, else ``$AGENT_CONFIG``, else ``./agent.toml``."""
    return Path(explicit or os.environ.get("AGENT_CONFIG") or DEFAULT_CONFIG)


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read, override from the environment, validate and cross-check; raise ConfigError."""
    path = Path(path)
    try:
        exists, is_file = path.exists(), path.is_file()
    except OSError as exc:  # a name too long, a loop of links: the OS refuses the path
        raise ConfigError(path, [f"cannot use this path: {exc.strerror or exc}"]) from None
    if not exists:
        hint = "write a commented starter config with `ixon-agent init"
        hint += f" {path}`" if path != Path(DEFAULT_CONFIG) else "`"
        raise ConfigError(path, [f"file not found: {hint}, or give --config PATH"])
    if not is_file:
        raise ConfigError(path, ["not a file"])
    try:
        # tomli is the standard library's tomllib (same parser, same errors), compiled: a
        # config of 50k variables parses in 0.6 s instead of 1.7
        with path.open("rb") as file:
            data = tomli.load(file)
    except tomli.TOMLDecodeError as exc:
        raise ConfigError(path, [f"TOML syntax error: {exc}"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, [f"cannot read: {exc}"]) from None
    env_places: dict[str, str] = {}
    problems = _apply_env(data, os.environ if environ is None else environ, env_places)
    if problems:
        raise ConfigError(path, problems)
    try:
        config = Config(**data)
    except ValidationError as exc:
        raise ConfigError(path, _describe(exc, env_places, data)) from None
    folder = path.parent.resolve()
    state_dir = config.agent.state_dir
    if not state_dir.is_absolute():
        agent = config.agent.model_copy(update={"state_dir": folder / state_dir})
        config = config.model_copy(update={"agent": agent})
    status = config.status
    if status.tls_cert or status.tls_key:
        paths = {k: folder / v for k in ("tls_cert", "tls_key") if (v := getattr(status, k))}
        config = config.model_copy(update={"status": status.model_copy(update=paths)})
    sources = [s.with_paths(folder, config.agent.state_dir) for s in config.sources]
    if any(new is not old for new, old in zip(sources, config.sources, strict=True)):
        config = config.model_copy(update={"sources": sources})
    problems = list(_cross_check(config))  # (with paths resolved: a kind may look at files)
    if problems:
        raise ConfigError(path, problems)
    return config


def place(loc: tuple[str | int, ...], data: Any = None) -> str:
    """``('sources', 0, 'variables', 2, 'width')`` -> ``sources[0].variables[2].width``; with
    the file's ``data``, the item the key is in is named too:
    ``sources[0].variables[2] (oil_temp).width``."""
    text = ""
    node = data
    last = max((i for i, part in enumerate(loc) if isinstance(part, int)), default=-1)
    for i, part in enumerate(loc):
        if isinstance(part, int):
            item = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            text += item_place("", part, item if i == last else None)
            node = item
        else:
            text += f".{part}" if text else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return text or "(top level)"


def _fields(schema: type) -> dict[str, FieldInfo]:
    """A model's or a pydantic dataclass's fields, by the key the file uses (the alias)."""
    found: dict[str, FieldInfo] = getattr(schema, "__pydantic_fields__", {})
    return {f.alias or name: f for name, f in found.items()}


def _model_at(loc: tuple[str | int, ...]) -> type | None:
    """The schema class (a model or a pydantic dataclass) the key at ``loc`` belongs to."""
    model: type = Config
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        fields = _fields(model)
        if part not in fields and part in MODELS:  # the union member a source validated as
            model = MODELS[part]
            continue
        found = _inner_model(fields[part].annotation) if part in fields else None
        if found is None:
            return None
        model = found
    return model


def _inner_model(annotation: Any) -> type | None:
    """``list[Source]``, ``HeartbeatSection | None`` -> the schema class inside."""
    if isinstance(annotation, type) and hasattr(annotation, "__pydantic_fields__"):
        return annotation
    for arg in get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _untag(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """The place in the file: without the kind pydantic adds after a source's index
    (``sources[0].<kind>.<key>`` is ``sources[0].<key>``)."""
    return tuple(
        part
        for i, part in enumerate(loc)
        if not (i >= 2 and loc[i - 2] == "sources" and isinstance(loc[i - 1], int))
    )


def _no_such_protocol(item: Any) -> str:
    if not isinstance(item, dict):
        return "a source is a table: [[sources]] with name, protocol and its keys"
    protocol = item.get("protocol", DEFAULT_PROTOCOL)
    names = ", ".join(repr(name) for name in PROTOCOL_KIND)
    hint = did_you_mean(protocol, PROTOCOL_KIND) if isinstance(protocol, str) else ""
    hint = hint if hint.startswith(";") else ""
    return f"{protocol!r} is not a protocol: one of {names}{hint}"


def _unknown_key(tagged: tuple[str | int, ...]) -> str:
    """An unknown key, with the key meant when it is a near miss, or the kind of source it
    belongs to when it is another kind's."""
    message = "unknown key (not part of the config schema)"
    model, key = _model_at(tagged), tagged[-1]
    if model is None or not isinstance(key, str):
        return message
    hint = did_you_mean(key, _fields(model))
    if hint.startswith(";"):
        return message + hint
    why = getattr(model, "NOT_HERE", {}).get(key)  # a kind's word on a key it leaves out
    if why:
        return f"{message}: {why}"
    if issubclass(model, SourceBase):
        owners = [m.KIND for m in MODELS.values() if m is not model and key in _fields(m)]
        if owners:
            return f"unknown key for protocol {model.PROTOCOLS[0]!r} ({key} is for {owners[0]})"
    return message


def _describe(exc: ValidationError, env_places: dict[str, str], data: Any) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        tagged = tuple(error["loc"])
        loc = _untag(tagged)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "union_tag_not_found" and loc[:1] == ("sources",):
            item = data["sources"][loc[1]] if len(loc) == 2 else None
            message = _no_such_protocol(item)
            loc += ("protocol",) if isinstance(item, dict) else ()
        plain, where = place(loc), place(loc, data)
        if error["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            message = _unknown_key(tagged)
        elif error["type"] == "missing":
            message = "required key is missing"
        origin = next((name for p, name in env_places.items() if plain.startswith(p)), None)
        if origin:
            message += f" (set by environment variable {origin})"
        problems.append(f"{where}: {message}")
    return problems


def _apply_env(
    data: dict[str, Any], environ: Mapping[str, str], places: dict[str, str]
) -> list[str]:
    """Override file values from ``AGENT_<SECTION>__<KEY>`` (list items by index)."""
    problems = []
    sections = set(Config.model_fields)
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split(ENV_DELIMITER)
        if parts[0] not in sections or len(parts) < 2:
            continue  # AGENT_CONFIG and other unrelated variables
        node: Any = data
        loc: list[str | int] = []
        for i, part in enumerate(parts):
            # a list item by index; a table's keys are strings, digits too (``bits.3``)
            key: str | int = int(part) if part.isdigit() and isinstance(node, list) else part
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not isinstance(key, int) or key >= len(node):
                    problems.append(f"{name}: no item {part!r} in {place(tuple(loc))}")
                    break
            elif not isinstance(node, dict):
                problems.append(f"{name}: {place(tuple(loc))} is not a table")
                break
            loc.append(key)
            if last:
                node[key] = value
                places[place(tuple(loc))] = name
            else:
                node = node.setdefault(key, {}) if isinstance(node, dict) else node[key]
    return problems


#: ilert takes 5 pings a minute per heartbeat key: an interval below this pings more often
HEARTBEAT_MIN_INTERVAL = 12.0
#: environment variables with the prefix that are not settings, and mean something
_OTHER_ENV = frozenset({"AGENT_CONFIG"})


def config_warnings(config: Config, environ: Mapping[str, str] | None = None) -> list[str]:
    """What runs but is likely not what was meant: ``check`` prints these, ``run`` logs them."""
    environ = os.environ if environ is None else environ
    found = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in _OTHER_ENV:
            continue
        parts = name[len(ENV_PREFIX) :].lower().split(ENV_DELIMITER)
        sections = list(Config.model_fields)
        if parts[0] not in sections:
            rest = ENV_DELIMITER.join(parts[1:]).upper()
            known = [f"{ENV_PREFIX}{sec.upper()}{ENV_DELIMITER}{rest}" for sec in sections]
            hint = did_you_mean(name, known)
            hint = hint if hint.startswith(";") else f" (sections: {', '.join(sections)})"
            found.append(f"environment variable {name} matches no setting and is ignored{hint}")
        elif len(parts) < 2:
            found.append(
                f"environment variable {name} names a section, not a setting, and is ignored:"
                f" {name}{ENV_DELIMITER}KEY (list items by index: AGENT_SOURCES__0__HOST)"
            )
    if config.heartbeat is not None and config.heartbeat.interval < HEARTBEAT_MIN_INTERVAL:
        found.append(
            f"heartbeat.interval: {config.heartbeat.interval:g} s pings more than 5 times a"
            " minute, ilert's limit per heartbeat key: pings past it are skipped (ilert"
            " advises pinging every 60 s with a monitor interval of 3 to 5 minutes)"
        )
    status = config.status
    if status.enabled and not status.loopback and not status.users:
        found.append(
            f"status.host: {status.host} lets anyone who reaches this machine read the page and"
            " the metrics (it has no actions without a login): add [status.users]"
            " (`ixon-agent hash-password NAME` makes a hash)"
        )
    if not config.webhooks:
        found.append(
            "webhooks: none configured: alarms are evaluated and logged, but nobody is notified"
        )
    for s_index, source in enumerate(config.sources):
        found += source.warnings(item_place("sources", s_index, source))
    return found


def _duplicates(items: Sequence[Any], attr: str, where: str) -> Iterator[str]:
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        value = getattr(item, attr)
        if value in seen:
            first = f"{where}[{seen[value]}]"
            at = item_place(where, index, item)
            yield f"{at}.{attr}: duplicate {attr} {value!r} (first at {first})"
        else:
            seen[value] = index


def _cross_check(config: Config) -> Iterator[str]:
    """Rules that span several entries, each reported at the place to fix."""
    yield from _duplicates(config.sources, "name", "sources")
    yield from _duplicates(config.alarms, "name", "alarms")
    yield from _duplicates(config.webhooks, "name", "webhooks")
    for s_index, source in enumerate(config.sources):
        at = item_place("sources", s_index, source)
        yield from _duplicates(source.variables, "name", f"sources[{s_index}].variables")
        yield from source.problems(at, s_index, config.sources)
    known = {key: variable for key, _, variable in config.variables()}
    types = config.variable_types()
    yield from _check_status(config.status)
    yield from _alarm_names(config.alarms)
    for index, alarm in enumerate(config.alarms):
        yield from _check_alarm(item_place("alarms", index, alarm), alarm, known, types, config)
    formats = webhook_formats()
    for index, webhook in enumerate(config.webhooks):
        at = item_place("webhooks", index, webhook)
        entry = formats.get(webhook.format)
        if entry is None:
            names = ", ".join(repr(name) for name in sorted(formats))
            hint = did_you_mean(webhook.format, formats)
            hint = hint if hint.startswith(";") else ""
            yield f"{at}.format: {webhook.format!r} is not a format: one of {names}{hint}"
            continue
        checker: WebhookChecker = entry.load()
        yield from (f"{at}.{problem}" for problem in checker.problems(webhook))


#: the entry-point group where webhook formats are listed (pyproject.toml): the config
#: checks a format's name, and asks the format what a webhook of it lacks, without
#: importing the formats (they import the config)
FORMAT_GROUP = "ixon_agent.formats"


class WebhookChecker(Protocol):
    def problems(self, webhook: Webhook) -> Iterator[str]: ...


@functools.cache
def webhook_formats() -> dict[str, EntryPoint]:
    """The installed webhook formats by name."""
    return {entry.name: entry for entry in entry_points(group=FORMAT_GROUP)}


def _check_status(status: StatusSection) -> Iterator[str]:
    if (status.tls_cert is None) != (status.tls_key is None):
        yield "status.tls_key: give tls_cert and tls_key both, or neither"
        return
    for key in ("tls_cert", "tls_key"):
        path = getattr(status, key)
        if path is not None and not _readable(path):
            yield f"status.{key}: no such file: {path}"


def _readable(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def bit_name(alarm: str, text: str) -> str:
    """The name of one bit's alarm of an ``error_bits`` alarm: ``Drive fault: Overcurrent``."""
    return f"{alarm}: {text}"


def _alarm_names(alarms: list[Alarm]) -> Iterator[str]:
    """A bit's alarm must not take the name of another alarm: names pick alarms (shelve,
    tests, the panel)."""
    names = {a.name: i for i, a in enumerate(alarms)}
    for index, alarm in enumerate(alarms):
        for bit, spec in sorted((alarm.bits or {}).items()) if alarm.form == "error_bits" else ():
            other = names.get(bit_name(alarm.name, spec.text))
            if other is not None:
                yield (
                    f"{item_place('alarms', index, alarm)}.bits.{bit}: its alarm is called"
                    f" {bit_name(alarm.name, spec.text)!r}, as alarms[{other}] is"
                )


#: the keys only one form of alarm takes
_FORM_KEYS = {
    "formula": ("formula",),
    "error_bits": ("bits",),
    "bit_pattern": ("mask", "pattern"),
    "rate_of_change": ("per", "window"),
}


def _check_alarm(
    at: str, alarm: Alarm, known: dict[str, Variable], types: dict[str, str], config: Config
) -> Iterator[str]:
    form = alarm.form
    for other, keys in _FORM_KEYS.items():
        for key in keys:
            if other != form and getattr(alarm, key) is not None:
                yield f"{at}.{key}: only for type {other!r}; this alarm is {form!r}"
    if form == "formula":
        for name in ("variable", "condition", "threshold"):
            if getattr(alarm, name) is not None:
                yield f"{at}.{name}: not used with formula; give one or the other"
        if alarm.deadband:
            yield f"{at}.deadband: applies to a variable with a condition, not to a formula"
        if alarm.formula is None:
            yield f"{at}.formula: required for type 'formula'"
            return
        try:
            compile_formula(alarm.formula, types)
        except FormulaError as exc:
            yield f"{at}.formula: {exc}"
        return
    if form in ("error_bits", "bit_pattern"):
        yield from _check_word_alarm(at, alarm, known)
        return
    missing = [n for n in ("variable", "condition", "threshold") if getattr(alarm, n) is None]
    if missing:
        also = "" if form == "rate_of_change" else " (or give a formula)"
        yield from (f"{at}.{name}: required{also}" for name in missing)
        return
    assert alarm.variable is not None and alarm.threshold is not None
    variable = known.get(alarm.variable)
    if variable is None:
        yield f"{at}.variable: no variable {alarm.variable!r}{did_you_mean(alarm.variable, known)}"
        return
    ranged = alarm.condition in ("between", "outside")
    if ranged != isinstance(alarm.threshold, tuple):
        shape = "[low, high]" if ranged else "a single value"
        yield f"{at}.threshold: condition {alarm.condition!r} needs {shape}"
        return
    numeric_var = variable.type in ("int", "float")
    threshold = alarm.threshold
    if form == "rate_of_change":
        yield from _check_rate(at, alarm, variable, config)
        return
    if alarm.condition in NUMERIC_CONDITIONS and not numeric_var:
        yield (
            f"{at}.condition: {alarm.condition!r} needs a numeric variable;"
            f" {alarm.variable} is {variable.type}"
        )
    elif numeric_var and not isinstance(threshold, float | tuple):
        yield f"{at}.threshold: {alarm.variable} is a number; the threshold must be one too"
    elif variable.type == "bool" and not isinstance(threshold, bool):
        yield f"{at}.threshold: {alarm.variable} is bool; use true or false"
    elif variable.type == "str" and not isinstance(threshold, str):
        yield f"{at}.threshold: {alarm.variable} is str; use a quoted string"
    if alarm.deadband and not numeric_var:
        yield f"{at}.deadband: applies to numeric variables only"


def _check_word_alarm(at: str, alarm: Alarm, known: dict[str, Variable]) -> Iterator[str]:
    """error_bits and bit_pattern: bits of an int variable read as it is."""
    form = alarm.form
    for name in ("condition", "threshold"):
        if getattr(alarm, name) is not None:
            yield f"{at}.{name}: not used with type {form!r}"
    if alarm.deadband:
        yield f"{at}.deadband: not used with type {form!r}: a bit has no margin"
    if form == "error_bits" and not alarm.bits:
        yield f'{at}.bits: required for error_bits: bit number = "text", as 0 = "Overcurrent"'
    if form == "bit_pattern":
        for name in ("mask", "pattern"):
            if getattr(alarm, name) is None:
                yield f"{at}.{name}: required for type 'bit_pattern'"
    if alarm.variable is None:
        yield f"{at}.variable: required for type {form!r}"
        return
    variable = known.get(alarm.variable)
    if variable is None:
        yield f"{at}.variable: no variable {alarm.variable!r}{did_you_mean(alarm.variable, known)}"
        return
    if variable.type != "int":
        yield (
            f"{at}.variable: type {form!r} reads the bits of an int variable;"
            f" {alarm.variable} is {variable.type}"
        )
        return
    if variable.factor != 1.0 or variable.offset != 0.0:
        yield (
            f"{at}.variable: {alarm.variable} is scaled (factor/offset); a word's bits are"
            " read as they arrive: give it a variable of its own without scaling"
        )
    width = variable.width or 16
    texts: dict[str, int] = {}
    for bit, spec in sorted((alarm.bits or {}).items()):
        if bit >= width:
            yield (
                f"{at}.bits.{bit}: bit {bit} is past the {width} bits of {alarm.variable}"
                f" (0 to {width - 1})"
            )
        if spec.text in texts:
            yield f"{at}.bits.{bit}: text {spec.text!r} is bit {texts[spec.text]}'s too"
        texts.setdefault(spec.text, bit)
    for name in ("mask", "pattern"):
        value = getattr(alarm, name)
        if value is not None and value >> width:
            yield f"{at}.{name}: {value:#x} does not fit the {width} bits of {alarm.variable}"
    if alarm.mask is not None and alarm.pattern is not None:
        if alarm.mask == 0:
            yield f"{at}.mask: 0 selects no bit"
        elif alarm.pattern & ~alarm.mask:
            outside = alarm.pattern & ~alarm.mask
            yield (
                f"{at}.pattern: {alarm.pattern:#x} has bits outside the mask {alarm.mask:#x}"
                f" ({outside:#x}): it could never match"
            )


def _check_rate(at: str, alarm: Alarm, variable: Variable, config: Config) -> Iterator[str]:
    if variable.type not in ("int", "float"):
        yield (
            f"{at}.variable: a rate of change needs a number; {alarm.variable} is {variable.type}"
        )
        return
    if alarm.condition not in NUMERIC_CONDITIONS:
        yield f"{at}.condition: compare a rate with > >= < <= between or outside"
    elif not isinstance(alarm.threshold, float | tuple):
        yield f"{at}.threshold: a rate is a number; the threshold must be one too"
    for name in ("per", "window"):
        if getattr(alarm, name) is None:
            yield f"{at}.{name}: required for type 'rate_of_change'"
    source = next(s for s in config.sources if (alarm.variable or "").startswith(f"{s.name}."))
    if alarm.window is not None and alarm.window < source.poll_interval:
        yield (
            f"{at}.window: {alarm.window:g} s is shorter than the poll interval of"
            f" {source.name} ({source.poll_interval:g} s): a rate needs two samples in it"
        )
