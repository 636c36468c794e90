"""The emulator's identity, kept per user so that exported variables survive a restart.

One folder (`$AGENT_RUN_EMULATOR_DIR`, else `$XDG_CACHE_HOME/agent-run/emulator`, else
`~/.cache/agent-run/emulator`; mode 0700) holds:

* `ca.pem` and `ca.key` (0600): the emulator's own CA; clients trust it via `SSL_CERT_FILE`;
* `credentials.json` (0600): the access key id and secret the emulator accepts.

Each is made when missing, unreadable, malformed or (the CA) about to expire, under a lock so
that emulators starting together agree. The server certificate is issued from the CA at every
start for the names the run needs, loaded straight into the TLS context, and its file removed at
once: nothing per run is left anywhere, even after a crash.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import json
import os
import re
import secrets
import ssl
import stat
import string
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from runner.errors import RunnerError

STATE_DIR_ENV: Final = "AGENT_RUN_EMULATOR_DIR"
CA_FILE: Final = "ca.pem"
CA_KEY_FILE: Final = "ca.key"
CREDENTIALS_FILE: Final = "credentials.json"
_LOCK_FILE: Final = ".lock"
_SERVER_PREFIX: Final = "server-"

# The CA is only ever trusted through SSL_CERT_FILE by clients pointed at the emulator; a year
# keeps exports working, and it is renewed (same file names) well before it lapses.
CA_VALIDITY: Final = timedelta(days=365)
CA_RENEW_BEFORE: Final = timedelta(days=7)
SERVER_VALIDITY: Final = timedelta(days=7)
# Clock differences between processes must not make a certificate "not yet valid".
BACKDATE: Final = timedelta(hours=1)
LOCK_TIMEOUT_S: Final = 10.0
_CA_NAME: Final = "agent-run Nova Sonic Emulator CA"
_KEY_ID_RE: Final = re.compile(r"AKIA[A-Z0-9]{16}")
_SECRET_RE: Final = re.compile(r"[A-Za-z0-9/+]{40}")


class EmulatorStateError(RunnerError):
    """The emulator's folder cannot be created, locked or written."""


@dataclass(frozen=True, slots=True)
class EmulatorIdentity:
    """What a user's emulator keeps between runs: its CA and the key pair it accepts."""

    directory: Path
    ca_file: Path
    ca_cert: x509.Certificate
    ca_key: ec.EllipticCurvePrivateKey
    access_key_id: str
    secret_access_key: str


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    """`$AGENT_RUN_EMULATOR_DIR`, else the XDG cache folder's `agent-run/emulator`."""
    env = os.environ if env is None else env
    if env.get(STATE_DIR_ENV):
        return Path(env[STATE_DIR_ENV]).expanduser()
    cache = env.get("XDG_CACHE_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    base = Path(cache) if cache and Path(cache).is_absolute() else Path.home() / ".cache"
    return base / "agent-run" / "emulator"


def load_identity(directory: Path | None = None) -> EmulatorIdentity:
    """The identity kept in `directory` (default: `default_state_dir()`), made or repaired first."""
    directory = default_state_dir() if directory is None else directory
    try:
        _ensure_private_dir(directory)
        with _locked(directory):
            _remove_stale_server_files(directory)
            ca_cert, ca_key = _load_or_make_ca(directory)
            key_id, secret = _load_or_make_credentials(directory)
    except OSError as exc:
        raise EmulatorStateError(
            f"{directory}: cannot use the emulator's folder: {exc.strerror or exc}"
            f" (choose another with --state-dir or {STATE_DIR_ENV})"
        ) from None
    return EmulatorIdentity(directory, directory / CA_FILE, ca_cert, ca_key, key_id, secret)


def server_context(identity: EmulatorIdentity, hosts: Sequence[str] = ()) -> ssl.SSLContext:
    """A TLS server context (ALPN h2) with a fresh certificate for localhost, 127.0.0.1, ::1 and
    `hosts` (DNS names or IP addresses), issued from the identity's CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(next(iter(hosts), "localhost")))
        .issuer_name(identity.ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + SERVER_VALIDITY, identity.ca_cert.not_valid_after_utc))
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(identity.ca_key.public_key()), critical=False
        )
        .sign(identity.ca_key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM) + _key_pem(key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    # ssl loads a chain only from a file: a private one in the 0700 folder, gone straight after.
    path = identity.directory / f"{_SERVER_PREFIX}{os.getpid()}-{secrets.token_hex(4)}.pem"
    try:
        _write_new(path, pem)
        context.load_cert_chain(path)
    finally:
        path.unlink(missing_ok=True)
    return context


# --- the folder ---------------------------------------------------------------------------------


def _ensure_private_dir(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = directory.stat()
    if info.st_uid != os.getuid():
        raise OSError(errno.EPERM, "owned by another user")
    if info.st_mode & 0o077:
        directory.chmod(0o700)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    fd = os.open(directory / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise OSError(errno.EAGAIN, "locked by another process for too long") from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)  # releases the lock


def _remove_stale_server_files(directory: Path) -> None:
    """A server certificate file lives for milliseconds; one older than a minute is a leftover
    of a process killed at exactly that moment."""
    cutoff = time.time() - 60
    for path in directory.glob(f"{_SERVER_PREFIX}*.pem"):
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < cutoff:
                path.unlink()


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _replace_private(path: Path, data: bytes) -> None:
    """Write `path` (0600) so that no reader ever sees it half-written."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        _write_new(tmp, data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _read_private(path: Path) -> bytes | None:
    """The file's bytes, or None when it is missing, unreadable or not a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > 64 * 1024:
            return None
        if info.st_mode & 0o077:
            os.fchmod(f.fileno(), 0o600)
        return f.read()


# --- the CA -------------------------------------------------------------------------------------


def _load_or_make_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    loaded = _load_ca(directory)
    if loaded is not None:
        return loaded
    cert, key = _make_ca()
    _replace_private(directory / CA_KEY_FILE, _key_pem(key))
    _replace_private(directory / CA_FILE, cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    cert_pem, key_pem = _read_private(directory / CA_FILE), _read_private(directory / CA_KEY_FILE)
    if cert_pem is None or key_pem is None:
        return None
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        return None
    now = datetime.now(UTC)
    usable = (
        isinstance(key, ec.EllipticCurvePrivateKey)
        and key.public_key() == cert.public_key()
        and cert.not_valid_before_utc <= now
        and now + CA_RENEW_BEFORE < cert.not_valid_after_utc
    )
    return (cert, key) if usable and isinstance(key, ec.EllipticCurvePrivateKey) else None


def _make_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    # P-256: generated in milliseconds (RSA-2048 takes ~100 ms), accepted by aws-lc and OpenSSL.
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    name = _name(_CA_NAME)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


# --- the credentials ----------------------------------------------------------------------------


def _load_or_make_credentials(directory: Path) -> tuple[str, str]:
    path = directory / CREDENTIALS_FILE
    data = _read_private(path)
    if data is not None:
        try:
            stored = json.loads(data)
        except ValueError:
            stored = None
        if isinstance(stored, dict):
            key_id, secret = stored.get("aws_access_key_id"), stored.get("aws_secret_access_key")
            if (
                isinstance(key_id, str) and _KEY_ID_RE.fullmatch(key_id)
                and isinstance(secret, str) and _SECRET_RE.fullmatch(secret)
            ):
                return key_id, secret
    # Shaped like real AWS keys so that clients validating their format accept them.
    key_id = "AKIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))
    secret = "".join(secrets.choice(string.ascii_letters + string.digits + "/+") for _ in range(40))
    record = {"aws_access_key_id": key_id, "aws_secret_access_key": secret}
    _replace_private(path, (json.dumps(record, indent=2) + "\n").encode())
    return key_id, secret


# --- helpers ------------------------------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])


def _san(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(["localhost", "127.0.0.1", "::1", *hosts]):
        if host in ("", "0.0.0.0", "::"):
            continue
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
