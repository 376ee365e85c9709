"""``sisock tls``: the router's self-signed certificate and key.

The certificate is its own trust root: clients are given the certificate file
(``SISOCK_CERT``) and verify both the signature and the router's host name,
so it names every address clients may use (loopback, this host, the compose
service name, ``CROSSBAR_HOST`` and any ``--host`` given).

A pair made elsewhere and mounted read-only (a container) is checked by
:func:`check_pair` and used where it is, never rewritten.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sisock.config import ConfigError

CERT_NAME = "server_cert.pem"
KEY_NAME = "server_key.pem"
DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1", "sisock-crossbar")
VALID_DAYS = 3650
#: How two public keys are compared: their DER SubjectPublicKeyInfo.
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _default_hosts() -> list[str]:
    names = list(DEFAULT_NAMES)
    for name in (socket.gethostname(), socket.getfqdn(), os.environ.get("CROSSBAR_HOST")):
        if name and name not in names:
            names.append(name)
    return names


def _san(names):
    entries = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def make_certificate(directory: str, hosts=(), force: bool = False) -> tuple[str, str]:
    """Write ``server_cert.pem`` and ``server_key.pem`` into ``directory``.

    An existing pair is kept unless ``force``: every client trusts this exact
    certificate, so replacing it silently would lock them all out.
    """
    os.makedirs(directory, exist_ok=True)
    cert_path = os.path.join(directory, CERT_NAME)
    key_path = os.path.join(directory, KEY_NAME)
    if not force and os.path.exists(cert_path) and os.path.exists(key_path):
        return cert_path, key_path

    names = _default_hosts() + [h for h in hosts if h not in _default_hosts()]
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sisock"),
        x509.NameAttribute(NameOID.COMMON_NAME, "sisock router"),
    ])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(_san(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, key_encipherment=False,
                content_commitment=False, data_encipherment=False, key_agreement=True,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ))
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


class CertificateError(ConfigError):
    """An existing certificate or key cannot be used; the message says why."""


def pair_paths(directory: str) -> tuple[str, str]:
    """Absolute paths of the certificate and key in ``directory``."""
    directory = os.path.abspath(directory)
    return os.path.join(directory, CERT_NAME), os.path.join(directory, KEY_NAME)


def check_pair(directory: str) -> tuple[str, str]:
    """The pair already in ``directory``, checked; nothing is ever written.

    Meant for a pair made elsewhere and mounted read-only (a container): a
    missing, unreadable or mismatched file is reported here, in one line,
    rather than as a TLS traceback from deep inside the router.
    """
    cert_path, key_path = pair_paths(directory)
    missing = [p for p in (cert_path, key_path) if not os.path.isfile(p)]
    if missing:
        raise CertificateError(
            f"{' and '.join(missing)} not found: create the pair with "
            f"`sisock tls --dir {directory} --host <name clients use for the router>`"
        )
    for path in (cert_path, key_path):
        if not os.access(path, os.R_OK):
            raise CertificateError(f"{path} is not readable by uid {os.getuid()}: make it readable by that user")
    try:
        with open(cert_path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        with open(key_path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"cannot load the pair in {directory}: {exc}") from None
    if cert.public_key().public_bytes(*_SPKI) != key.public_key().public_bytes(*_SPKI):
        raise CertificateError(f"{key_path} is not the key of {cert_path}: the pair does not match")
    return cert_path, key_path
