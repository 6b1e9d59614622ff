"""The agent's own OPC UA application certificate: made once, at first need, under
state_dir, and reused on every start after, so that a PLC that trusts it keeps trusting
it (a new certificate per start makes operators re-trust it: Telegraf #11454)."""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from asyncua.crypto import cert_gen
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

#: the certificate says this application is ixon-agent on this host; the URI is read back
#: from the certificate on every start, so a renamed host keeps its certificate
APPLICATION_URI = "urn:{host}:ixon-agent"
#: ten years: a PLC's trust list entry should not lapse under a running machine
VALID_DAYS = 3650


@dataclass(frozen=True)
class Identity:
    certificate: Path
    private_key: Path
    application_uri: str
    thumbprint: str  # SHA-1 of the DER, as a PLC's trust list shows it: "AB:CD:…"


def thumbprint(der: bytes) -> str:
    digest = hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def load_der(path: Path) -> bytes:
    """A certificate file as DER, whether it is stored as DER or as PEM."""
    data = path.read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
    return data


def ensure_identity(certificate: Path, private_key: Path) -> Identity:
    """The agent's certificate and key, made when either is absent: the key at mode 600 in a
    folder at mode 700, written whole before it is used."""
    if not (certificate.is_file() and private_key.is_file()):
        _make(certificate, private_key)
    der = certificate.read_bytes()
    cert = x509.load_der_x509_certificate(der)
    uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    found = uris.get_values_for_type(x509.UniformResourceIdentifier)
    uri = found[0] if found else APPLICATION_URI.format(host=socket.gethostname())
    return Identity(certificate, private_key, uri, thumbprint(der))


def _make(certificate: Path, private_key: Path) -> None:
    host = socket.gethostname()
    uri = APPLICATION_URI.format(host=host)
    key = cert_gen.generate_private_key()
    cert = cert_gen.generate_self_signed_app_certificate(
        key,
        f"ixon-agent@{host}",
        {},
        [x509.UniformResourceIdentifier(uri), x509.DNSName(host)],
        extended=[ExtendedKeyUsageOID.CLIENT_AUTH],
        days=VALID_DAYS,
    )
    for path in (certificate, private_key):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write(private_key, cert_gen.dump_private_key_as_pem(key), 0o600)
    _write(certificate, cert.public_bytes(Encoding.DER), 0o644)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Whole or not at all: a crash mid-write leaves no half a key to be reused."""
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)
