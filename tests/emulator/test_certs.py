"""The emulator's per-user identity folder: made private, kept, repaired when broken."""

from __future__ import annotations

import contextlib
import ssl
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from runner.emulator.certs import EmulatorStateError, default_state_dir, load_identity, server_context


def test_default_folder_follows_xdg_and_the_override(tmp_path: Path) -> None:
    home_default = Path.home() / ".cache" / "agent-run" / "emulator"
    assert default_state_dir({}) == home_default
    assert default_state_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "agent-run" / "emulator"
    assert default_state_dir({"XDG_CACHE_HOME": "relative/ignored"}) == home_default
    assert default_state_dir({"AGENT_RUN_EMULATOR_DIR": str(tmp_path / "x"), "XDG_CACHE_HOME": "/c"}) \
        == tmp_path / "x"


def test_identity_is_made_private_once_and_then_kept(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "emulator"
    first = load_identity(folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("ca.key", "credentials.json"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    second = load_identity(folder)
    assert (second.access_key_id, second.secret_access_key) == (first.access_key_id, first.secret_access_key)
    assert second.ca_cert == first.ca_cert
    assert first.access_key_id.startswith("AKIA") and len(first.access_key_id) == 20
    assert len(first.secret_access_key) == 40


def test_a_loose_folder_is_made_private_again(tmp_path: Path) -> None:
    folder = tmp_path / "emulator"
    load_identity(folder)
    folder.chmod(0o755)
    (folder / "ca.key").chmod(0o644)
    load_identity(folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "ca.key").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "damage", ["missing key", "garbage key", "other key", "directory", "bad credentials"])
def test_a_broken_identity_is_regenerated(tmp_path: Path, damage: str) -> None:
    folder = tmp_path / "emulator"
    first = load_identity(folder)
    key = folder / "ca.key"
    if damage == "missing key":
        key.unlink()
    elif damage == "garbage key":
        key.write_bytes(b"not a key")
    elif damage == "other key":
        other = load_identity(tmp_path / "other")
        key.write_bytes((tmp_path / "other" / "ca.key").read_bytes())
        assert other.ca_cert != first.ca_cert
    elif damage == "directory":
        key.unlink()
        key.mkdir()
    else:
        (folder / "credentials.json").write_text('{"aws_access_key_id": 1}')
    if damage == "directory":
        # A folder where the key should be cannot be replaced by a file: a clear error.
        with pytest.raises(EmulatorStateError, match="emulator's folder"):
            load_identity(folder)
        return
    second = load_identity(folder)
    if damage == "bad credentials":
        assert second.access_key_id != first.access_key_id and second.ca_cert == first.ca_cert
    else:
        assert second.ca_cert != first.ca_cert
        assert second.ca_key.public_key() == second.ca_cert.public_key()
        assert second.access_key_id == first.access_key_id


def test_a_ca_about_to_expire_is_renewed(tmp_path: Path) -> None:
    folder = tmp_path / "emulator"
    first = load_identity(folder)
    now = datetime.now(UTC)
    old = (
        x509.CertificateBuilder()
        .subject_name(first.ca_cert.subject).issuer_name(first.ca_cert.subject)
        .public_key(first.ca_key.public_key()).serial_number(1)
        .not_valid_before(now - timedelta(days=400)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(first.ca_key, hashes.SHA256())
    )
    (folder / "ca.pem").write_bytes(old.public_bytes(serialization.Encoding.PEM))
    renewed = load_identity(folder)
    assert renewed.ca_cert.not_valid_after_utc > now + timedelta(days=300)


def test_emulators_starting_together_agree(tmp_path: Path) -> None:
    folder = tmp_path / "emulator"
    found: list[tuple[str, bytes]] = []

    def start() -> None:
        identity = load_identity(folder)
        found.append((identity.access_key_id, identity.ca_cert.public_bytes(serialization.Encoding.DER)))

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(found) == 6 and len(set(found)) == 1


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, name: str) -> str:
    """A TLS handshake in memory; returns the ALPN protocol the server chose."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    tls_client = client.wrap_bio(c_in, c_out, server_hostname=name)
    tls_server = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for tls, out, peer_in in ((tls_client, c_out, s_in), (tls_server, s_out, c_in)):
            with contextlib.suppress(ssl.SSLWantReadError):
                tls.do_handshake()
            peer_in.write(out.read())
    return tls_client.selected_alpn_protocol() or ""


def test_server_certificate_covers_the_names_and_leaves_no_file(tmp_path: Path) -> None:
    identity = load_identity(tmp_path / "emulator")
    server = server_context(identity, ["bedrock-runtime.us-east-1.amazonaws.com", "10.1.2.3"])
    assert sorted(p.name for p in identity.directory.iterdir()) == [
        ".lock", "ca.key", "ca.pem", "credentials.json"]
    client = ssl.create_default_context(cafile=identity.ca_file)
    client.set_alpn_protocols(["h2"])
    for name in ("bedrock-runtime.us-east-1.amazonaws.com", "localhost", "127.0.0.1", "10.1.2.3"):
        assert _handshake(server, client, name) == "h2"
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(server, client, "bedrock-runtime.us-west-2.amazonaws.com")


def test_an_unusable_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(EmulatorStateError, match="cannot use the emulator's folder"):
        load_identity(blocker / "emulator")
