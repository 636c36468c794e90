"""`agent-run doctor`: what a run needs, checked one thing at a time, each with a fix.

Every check is a small function returning a CheckResult; `diagnose()` runs them in order. Checks
never raise for what they find: a missing package, credentials or device is a result, not an
error. Everything that waits (credentials, sockets, streams, subprocesses) is bounded in time.

Secrets: no check puts a secret into its result, and `diagnose()` still scrubs every known secret
value (and the full access key id) from all results before they are shown, because error messages
of third-party code are not under our control.
"""

from __future__ import annotations

import asyncio
import configparser
import contextlib
import importlib
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from runner.audio import pyaudio_device
from runner.audio.pyaudio_device import DeviceInfo
from runner.config.model import AgentConfig
from runner.errors import AudioDeviceError, CredentialsError, RunnerError, TransportError
from runner.files import UnreadableFileError, read_user_file
from runner.models import NOVA_2_SONIC, is_nova2
from runner.protocol.events import AudioOutput, Role, TextOutput, ToolUse
from runner.protocol.session import Session
from runner.protocol.setup import SessionSetup
from runner.protocol.templates import EventTemplates
from runner.transports.base import ConnectionInfo, Connector, Stream
from runner.transports.sdk_files import CA_VARIABLES, MAX_SDK_FILE_BYTES, check_sdk_files

Status = Literal["ok", "warn", "fail", "skipped"]
STATUSES: tuple[Status, ...] = ("ok", "warn", "fail", "skipped")

MIN_PYTHON = (3, 12)
SDK_DIST = "aws-sdk-bedrock-runtime"
SDK_VERSION = "0.12.0"  # pinned in pyproject.toml: the 0.x SDK changes its API every few minors
SDK_FIX = f"pip install '{SDK_DIST}[awscrt]=={SDK_VERSION}' (or reinstall: pip install nova-agent-runner)"
CREDENTIALS_TIMEOUT_S = 3.0
CONNECT_TIMEOUT_S = 3.0
PROBE_TIMEOUT_S = 10.0
ESPEAK_TIMEOUT_S = 3.0
EXPIRY_WARNING = timedelta(minutes=15)
DEFAULT_REGION = "us-east-1"
HEADLESS_FIX = ('on a headless machine start PulseAudio with two null sinks (default input and '
                'output): eval "$(tests/audio_env.sh start)" in a source checkout')
CREDENTIALS_FIX = (
    "configure AWS credentials: `aws configure` (writes ~/.aws/credentials), or export "
    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (with SSO: "
    'eval "$(aws configure export-credentials --format env)"); '
    "to try everything offline use --emulate")


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One line of the report: what was checked, how it went, and how to fix it when not ok."""

    name: str
    status: Status
    summary: str
    fix: str | None = None
    details: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "status": self.status, "summary": self.summary,
                "fix": self.fix, "details": list(self.details)}


@dataclass(frozen=True, slots=True)
class DoctorOptions:
    agent: Path | None = None
    offline: bool = False
    emulate: bool = False
    profile: str | None = None


def exit_code(results: list[CheckResult]) -> int:
    """0 when nothing failed (warnings and skipped checks are fine), else 1."""
    return 1 if any(r.status == "fail" for r in results) else 0


# --- Python and the SDK -------------------------------------------------------------------------

def check_python(version: tuple[int, ...] = tuple(sys.version_info[:3])) -> CheckResult:
    shown = ".".join(map(str, version))
    if version[:2] >= MIN_PYTHON:
        return CheckResult("python", "ok", f"Python {shown}")
    need = ".".join(map(str, MIN_PYTHON))
    return CheckResult("python", "fail", f"Python {shown} is too old (the Bedrock SDK needs {need}+)",
                       fix=f"install Python {need} or newer, then in a new venv: "
                           f"python{need} -m venv .venv && .venv/bin/pip install nova-agent-runner")


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _importable(module: str) -> str | None:
    """None when `module` imports, else why not."""
    try:
        importlib.import_module(module)
    except Exception as exc:  # an SDK that fails to import may raise anything
        return f"{type(exc).__name__}: {exc}"
    return None


def check_sdk() -> CheckResult:
    """The pinned SDK and awscrt (the duplex stream needs the [awscrt] extra's CRT HTTP client)."""
    version = _dist_version(SDK_DIST)
    if version is None:
        return CheckResult("bedrock-sdk", "fail", f"{SDK_DIST} is not installed", fix=SDK_FIX)
    if version != SDK_VERSION:
        return CheckResult("bedrock-sdk", "fail",
                           f"{SDK_DIST} {version} is installed, the runner needs exactly {SDK_VERSION}",
                           fix=SDK_FIX)
    # Importing the SDK reads SSL_CERT_FILE (aiohttp builds an SSL context): a FIFO there would
    # hang doctor, /dev/zero exhaust it.
    try:
        check_sdk_files(variables=CA_VARIABLES)
    except CredentialsError as exc:
        return CheckResult("bedrock-sdk", "fail", f"{SDK_DIST} {version} cannot be loaded: {exc}",
                           fix="point SSL_CERT_FILE / AWS_CA_BUNDLE at a regular file, or unset them")
    # Import by name only: the transport module owns the SDK; this just proves it loads.
    problem = _importable("aws_sdk_bedrock_runtime.client")
    if problem is not None:
        return CheckResult("bedrock-sdk", "fail", f"{SDK_DIST} {version} does not import ({problem})",
                           fix=SDK_FIX)
    crt = _dist_version("awscrt")
    problem = _importable("smithy_http.aio.crt") if crt is not None else "not installed"
    if crt is None or problem is not None:
        return CheckResult("bedrock-sdk", "fail",
                           f"{SDK_DIST} {version} found, but awscrt is missing or broken ({problem}); "
                           "the bidirectional stream needs it", fix=SDK_FIX)
    return CheckResult("bedrock-sdk", "ok", f"{SDK_DIST} {version}, awscrt {crt}")


# --- AWS settings -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AwsProfile:
    """What the shared config files say about one profile (values needed for the report only)."""

    name: str
    # Whether either file has a section for this profile (the SDK refuses a named profile that does not).
    exists: bool = False
    region: str | None = None
    region_file: str | None = None
    access_key_id: str | None = None
    keys_file: str | None = None
    session_token: bool = False
    # A way to get credentials other than keys: credential_process, sso_session, role_arn, ...
    other_source: str | None = None
    secrets: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


# Profile settings that fetch credentials some other way (name -> what the report calls it).
_OTHER_SOURCES = {"credential_process": "credential_process", "sso_session": "SSO",
                  "sso_start_url": "SSO", "role_arn": "assume role",
                  "web_identity_token_file": "web identity", "login_session": "login"}
# The default chain runs credential_process itself; the rest needs plug-ins (bedrock-sdk.md §2.4).
_SUPPORTED_OTHER = frozenset({"credential_process"})


def _read_ini(path: Path) -> tuple[configparser.ConfigParser | None, str | None]:
    parser = configparser.ConfigParser(interpolation=None)
    if not os.path.lexists(path):
        return None, None
    try:  # a FIFO or /dev/zero named by AWS_CONFIG_FILE must not hang or exhaust doctor
        text = read_user_file(path, limit=MAX_SDK_FILE_BYTES, what="an AWS config file").decode("utf-8")
        parser.read_string(text, source=str(path))
    except UnreadableFileError as exc:
        return None, f"{path}: cannot read ({exc.reason})"
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        return None, f"{path}: cannot read ({str(exc).splitlines()[0]})"
    return parser, None


def read_aws_profile(env: Mapping[str, str], home: Path, profile: str | None = None) -> AwsProfile:
    """The chosen profile (explicit, else AWS_PROFILE, else default) from ~/.aws/{config,credentials}."""
    name = profile or env.get("AWS_PROFILE") or "default"
    config_path = Path(env.get("AWS_CONFIG_FILE") or home / ".aws" / "config")
    creds_path = Path(env.get("AWS_SHARED_CREDENTIALS_FILE") or home / ".aws" / "credentials")
    values: dict[str, tuple[str, str]] = {}  # key -> (value, file); credentials file wins
    problems: list[str] = []
    exists = False
    for path, section in ((config_path, name if name == "default" else f"profile {name}"),
                          (creds_path, name)):
        parser, problem = _read_ini(path)
        if problem:
            problems.append(problem)
        if parser is not None and parser.has_section(section):
            exists = True
            values.update({k: (v, str(path)) for k, v in parser.items(section)})
    key, key_file = values.get("aws_access_key_id", (None, None))
    other = next((label for k, label in _OTHER_SOURCES.items() if k in values), None)
    secrets = tuple(values[k][0] for k in ("aws_secret_access_key", "aws_session_token") if k in values)
    region, region_file = values.get("region", (None, None))
    return AwsProfile(
        name=name, exists=exists, region=region, region_file=region_file,
        access_key_id=key, keys_file=key_file, session_token="aws_session_token" in values,
        other_source=other, secrets=secrets, problems=tuple(problems))


@dataclass(frozen=True, slots=True)
class RegionFinding:
    region: str | None
    source: str


def find_region(agent_region: str | None, env: Mapping[str, str], profile: AwsProfile,
                agent_label: str = "the agent file") -> RegionFinding:
    """The region a run uses, in the runner's order: the agent's model.region, then the SDK's
    own order (AWS_REGION, AWS_DEFAULT_REGION, the profile's region)."""
    if agent_region:
        return RegionFinding(agent_region, f"model.region in {agent_label}")
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if env.get(var):
            return RegionFinding(env[var], var)
    if profile.region:
        return RegionFinding(profile.region, f"profile {profile.name!r} in {profile.region_file}")
    return RegionFinding(None, "")


# Where Nova Sonic models are offered (nova-sonic-protocol.md §6.4; may grow, so only a warning).
NOVA_REGIONS = ("us-east-1", "us-west-2", "ap-northeast-1", "eu-north-1")


def check_region(found: RegionFinding) -> CheckResult:
    if found.region is None:
        return CheckResult("region", "fail", "no AWS region configured",
                           fix=f"set model.region in the agent file, or export AWS_REGION={DEFAULT_REGION}")
    summary = f"{found.region} (from {found.source})"
    if found.region not in NOVA_REGIONS:
        return CheckResult("region", "warn", f"{summary}: Nova Sonic is not known to be offered there",
                           fix=f"use a region with Nova Sonic ({', '.join(NOVA_REGIONS)}), "
                               "e.g. model.region: us-east-1")
    return CheckResult("region", "ok", summary)


def mask_key_id(key_id: str) -> str:
    """At most the last 4 characters of an access key id (the id itself is not secret, but
    there is no need to show more than a person needs to tell two keys apart)."""
    return f"****{key_id[-4:]}" if len(key_id) > 8 else "****"


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def describe_credentials(info: ConnectionInfo, env: Mapping[str, str], profile: AwsProfile,
                         now: datetime) -> CheckResult:
    """The report line for credentials the SDK resolved: source, masked key id, temporary/expiry."""
    from_env = info.credentials_source.startswith("environment")
    key = env.get("AWS_ACCESS_KEY_ID") if from_env else profile.access_key_id
    temporary = bool(env.get("AWS_SESSION_TOKEN")) if from_env else profile.session_token
    # The SDK does not read AWS_CREDENTIAL_EXPIRATION, but `aws configure export-credentials` sets it.
    expiry = info.credentials_expiry
    if expiry is None and from_env:
        expiry = _parse_time(env.get("AWS_CREDENTIAL_EXPIRATION"))
    source = info.credentials_source
    if not from_env and profile.keys_file:
        source += f" in {profile.keys_file}"
    parts = [f"found in {source}"]
    if key:
        parts.append(f"key {mask_key_id(key)}")
    if expiry is not None:
        left = expiry - now
        parts.append(f"temporary, expire {expiry:%Y-%m-%d %H:%M:%S %Z}")
        if left <= timedelta(0):
            return CheckResult("credentials", "fail", f"{', '.join(parts)}: EXPIRED",
                               fix="refresh them (e.g. `aws sso login`, then export-credentials again)")
        minutes = int(left.total_seconds() // 60)
        parts[-1] += f" (in {minutes} min)"
        if left < EXPIRY_WARNING:
            return CheckResult("credentials", "warn", ", ".join(parts),
                               fix="refresh them before a long conversation; streams cannot outlive them")
    elif temporary:
        parts.append("temporary (session token), expiry unknown")
    elif not key and profile.other_source:
        parts.append(f"from {profile.other_source}")
    else:
        parts.append("long-term keys")
    return CheckResult("credentials", "ok", ", ".join(parts))


def credentials_fix(env: Mapping[str, str], profile: AwsProfile) -> str:
    """The most specific fix for 'no credentials found'."""
    if env.get("AWS_ACCESS_KEY_ID") and not env.get("AWS_SECRET_ACCESS_KEY"):
        return "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not: export both"
    if not profile.exists and profile.name != "default":
        return (f"profile {profile.name!r} is not in ~/.aws/config or ~/.aws/credentials: create it "
                f"(`aws configure --profile {profile.name}`) or choose another "
                "(`aws configure list-profiles`)")
    if profile.other_source and profile.other_source not in _SUPPORTED_OTHER:
        return (f"profile {profile.name!r} uses {profile.other_source}, which the Bedrock SDK cannot "
                f"resolve by itself: eval \"$(aws configure export-credentials --profile {profile.name} "
                "--format env)\"")
    return CREDENTIALS_FIX


async def open_bedrock(region: str | None, endpoint: str | None, profile: str | None) -> Connector:
    """The runner's own connector (same resolution as a run), bounded in time."""
    check_sdk_files()  # before the import (CredentialsError, reported like any credentials problem)
    from runner.transports.bedrock import open_connector  # the SDK import costs ~0.5 s

    async with asyncio.timeout(CREDENTIALS_TIMEOUT_S):
        return await open_connector(region=region or DEFAULT_REGION, endpoint=endpoint, profile=profile)


# --- Bedrock: reachability and the model ---------------------------------------------------------

def bedrock_endpoint(agent_endpoint: str | None, env: Mapping[str, str], region: str | None) -> str:
    """The endpoint a run talks to (the SDK's order: explicit, service env, global env, regional)."""
    return (agent_endpoint or env.get("AWS_ENDPOINT_URL_BEDROCK_RUNTIME") or env.get("AWS_ENDPOINT_URL")
            or f"https://bedrock-runtime.{region or DEFAULT_REGION}.amazonaws.com")


@dataclass(frozen=True, slots=True)
class Reach:
    ok: bool
    elapsed_ms: float
    error: str | None = None
    # True when the network worked but TLS refused the certificate: a real problem, not "offline".
    tls_failure: bool = False


async def reach(endpoint: str, timeout_s: float = CONNECT_TIMEOUT_S) -> Reach:
    """A TCP connect plus TLS handshake (for https) to `endpoint`, within `timeout_s`."""
    url = urlsplit(endpoint)
    host = url.hostname or ""
    tls = url.scheme != "http"
    port = url.port or (443 if tls else 80)
    # The default context honours SSL_CERT_FILE, as the CRT client does.
    context = ssl.create_default_context() if tls else None
    start = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(host, port, ssl=context,
                                                      server_hostname=host if tls else None)
    except ssl.SSLCertVerificationError as exc:
        return Reach(False, 0.0, exc.verify_message or str(exc), tls_failure=True)
    except TimeoutError:
        return Reach(False, 0.0, f"no answer within {timeout_s:.0f} s")
    except socket.gaierror as exc:
        return Reach(False, 0.0, f"cannot resolve {host}: {exc.strerror}")
    except ssl.SSLError as exc:
        return Reach(False, 0.0, f"TLS handshake failed: {exc}")
    except OSError as exc:
        # asyncio's message is "Connect call failed (...)"; the errno says why.
        return Reach(False, 0.0, f"{os.strerror(exc.errno)} ({host}:{port})" if exc.errno else str(exc))
    elapsed = (time.monotonic() - start) * 1000
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(1.0):
            await writer.wait_closed()
    return Reach(True, elapsed)


@dataclass(frozen=True, slots=True)
class Probe:
    """What a probe stream showed: how long until the first output event, and which one."""

    elapsed_s: float
    first_event: str


PROBE_PROMPT = "You are a connectivity check. Answer with one short word."
PROBE_GREETING = "Say OK."


def probe_setup(base: SessionSetup | None) -> SessionSetup:
    """The agent's own setup (so its voice, tools and settings are checked too) with a short
    greeting to get an answer, or a minimal Nova 2 setup."""
    if base is None:
        return SessionSetup(model_id=NOVA_2_SONIC.id, voice_id="tiffany", system_prompt=PROBE_PROMPT,
                            greeting=PROBE_GREETING)
    return replace(base, greeting=PROBE_GREETING, history=())


async def probe_stream(connector: Connector, setup: SessionSetup, templates: EventTemplates,
                       *, timeout_s: float = PROBE_TIMEOUT_S) -> Probe:
    """Open a stream, send the opening events and a first user turn, wait for the first output event.

    A Nova 2 model answers the greeting; a v1 model only answers speech, so it gets a short spoken
    "Hello" followed by the silence that ends a turn. Raises TransportError.
    """
    start = time.monotonic()
    session = Session(setup, templates, new_id=lambda: str(uuid.uuid4()))
    stream = await connector.open_stream(setup.model_id)
    try:
        session.start()
        if not is_nova2(setup.model_id):
            for frame in spoken_turn(setup.input_sample_rate):
                session.send_audio(frame)
        for payload in session.data_to_send():
            await stream.send(payload)
        first = await _first_output(stream, session, timeout_s)
        session.end()
        for payload in session.data_to_send():
            await stream.send(payload)
        await stream.close_input(2.0)
    finally:
        await stream.aclose()
    return Probe(time.monotonic() - start, first)


def spoken_turn(rate: int, frame_ms: int = 40) -> list[bytes]:
    """"Hello." as speech (espeak-ng, else the emulator's synthetic voice) and 1 s of silence."""
    from runner.emulator.speech import synthesize

    pcm = synthesize("Hello.", rate) + bytes(rate * 2)
    size = rate * frame_ms // 1000 * 2
    return [pcm[i:i + size] for i in range(0, len(pcm), size)]


async def _first_output(stream: Stream, session: Session, wait_s: float) -> str:
    try:
        async with asyncio.timeout(wait_s):
            while True:
                payload = await stream.receive()
                if payload is None:
                    raise TransportError("the service ended the stream without answering",
                                         kind="StreamReset")
                for event in session.receive_data(payload):
                    # An answer, not just bookkeeping (completionStart, the user's transcript).
                    if isinstance(event, TextOutput) and event.role is Role.ASSISTANT:
                        return "assistant text"
                    if isinstance(event, AudioOutput | ToolUse):
                        return "assistant audio" if isinstance(event, AudioOutput) else "toolUse"
    except TimeoutError:
        raise TransportError(f"no answer within {wait_s:.0f} s", kind="ConnectionError") from None


def describe_probe(probe: Probe, model_id: str, where: str) -> str:
    return f"{model_id} answered via {where} in {probe.elapsed_s:.1f} s (first: {probe.first_event})"


# Refusals that mean the keys themselves are wrong, not the permissions.
_BAD_KEYS = frozenset({"UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException",
                       "InvalidClientTokenId", "SignatureDoesNotMatch"})


def probe_failure(exc: RunnerError, model_id: str, region: str) -> CheckResult:
    kind = getattr(exc, "kind", type(exc).__name__)
    if kind in _BAD_KEYS:
        fix = ("the service does not accept these credentials (wrong, expired or for another partition): "
               "refresh or reconfigure them, then run doctor again")
    elif kind == "AccessDeniedException" or "(HTTP 403)" in str(exc):
        fix = (f"enable access to {model_id} in the Bedrock console (Model access) in {region}, and allow "
               "bedrock:InvokeModelWithBidirectionalStream in your IAM policy")
    elif kind == "ValidationException":
        fix = ("check model.id, voice and region in the agent file (`agent-run check`); "
               "the message above is the service's own")
    elif kind == "ResourceNotFoundException":
        fix = f"{model_id} is not offered in {region}: use another region (e.g. us-east-1)"
    else:
        fix = "retry; if it persists, check the message above (throttling, quota or service status)"
    return CheckResult("bedrock", "fail", f"{model_id} stream failed: {exc}", fix=fix)


def offline_result(host: str, why: str) -> CheckResult:
    return CheckResult("bedrock", "skipped", f"offline: could not reach {host}; model access not checked",
                       fix="run again with network access (or check proxy/firewall); "
                           "--emulate checks the stream path locally", details=(why,))


async def check_bedrock(endpoint: str, *, offline: bool, connector: Connector | None,
                        setup: SessionSetup | None, templates: EventTemplates | None,
                        region: str) -> CheckResult:
    host = urlsplit(endpoint).hostname or endpoint
    if offline:
        return CheckResult("bedrock", "skipped", f"offline (--offline): {host} not contacted; "
                           "model access not checked", fix="run without --offline when online")
    reached = await reach(endpoint)
    if not reached.ok and reached.tls_failure:
        return CheckResult("bedrock", "fail", f"{host}: TLS certificate not trusted ({reached.error})",
                           fix="set SSL_CERT_FILE to a CA bundle that includes the issuer (a TLS proxy, "
                               "or the emulator's CA printed by `agent-run emulate`)")
    if not reached.ok:
        return offline_result(host, reached.error or "unreachable")
    where = f"{host} (TLS in {reached.elapsed_ms:.0f} ms)"
    if connector is None or templates is None:
        return CheckResult("bedrock", "warn", f"reached {where}; model access not checked (no credentials)",
                           fix="fix the credentials check above, then run doctor again")
    final = probe_setup(setup)
    try:
        probe = await probe_stream(connector, final, templates)
    except RunnerError as exc:
        return probe_failure(exc, final.model_id, region)
    return CheckResult("bedrock", "ok", describe_probe(probe, final.model_id, where))


# --- the emulator end to end ---------------------------------------------------------------------

@contextlib.contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    """os.environ with `values` set, restored afterwards (the SDK reads CA and keys from it)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


async def check_emulator(setup: SessionSetup | None, templates: EventTemplates, region: str) -> CheckResult:
    """Start the in-process emulator and open a real stream through the SDK, as `--emulate` does."""
    from runner.emulator.local import local_emulator

    try:
        check_sdk_files(variables=CA_VARIABLES)  # importing the SDK reads SSL_CERT_FILE
    except CredentialsError as exc:
        return CheckResult("emulator", "fail", str(exc))
    from runner.transports.bedrock import open_connector

    final = probe_setup(setup)
    start = time.monotonic()
    try:
        async with local_emulator(region=region) as emulator:
            with patched_environ(emulator.env()):
                connector = await open_connector(region=region, endpoint=emulator.endpoint)
                try:
                    probe = await probe_stream(connector, final, templates)
                finally:
                    await connector.aclose()
    except (RunnerError, OSError) as exc:
        return CheckResult("emulator", "fail", f"the emulated run failed: {exc}",
                           fix="run `agent-run emulate` to see its log, and report a bug with this output")
    return CheckResult("emulator", "ok",
                       f"{describe_probe(probe, final.model_id, 'the built-in emulator')}; "
                       f"{time.monotonic() - start:.1f} s in all")


# --- audio and espeak-ng ------------------------------------------------------------------------

def check_audio(list_devices: Callable[[], list[DeviceInfo]] = pyaudio_device.list_devices) -> CheckResult:
    """PyAudio importable, at least one input and one output device, the defaults named."""
    try:
        devices = list_devices()
    except AudioDeviceError:
        return CheckResult("audio", "warn", "PyAudio is not installed: no microphone or speakers "
                           "(WAV files still work: --input/--output)",
                           fix="apt-get install portaudio19-dev, then pip install 'nova-agent-runner[audio]'")
    except OSError as exc:
        return CheckResult("audio", "warn", f"PortAudio failed: {exc}", fix=HEADLESS_FIX)
    inputs = [d for d in devices if d.max_input_channels > 0]
    outputs = [d for d in devices if d.max_output_channels > 0]
    default_in = next((d.name for d in inputs if d.is_default_input), None)
    default_out = next((d.name for d in outputs if d.is_default_output), None)
    summary = (f"{len(inputs)} input, {len(outputs)} output devices; default input "
               f"{default_in or '(none)'!r}, default output {default_out or '(none)'!r}")
    if not inputs or not outputs:
        missing = " or ".join(k for k, found in (("input", inputs), ("output", outputs)) if not found)
        return CheckResult("audio", "warn", f"no {missing} device: {summary} (WAV files still work: "
                           "--input/--output)", fix=HEADLESS_FIX)
    if default_in is None or default_out is None:
        return CheckResult("audio", "warn", f"{summary}; pass --input-device/--output-device",
                           fix="pick devices from `agent-run devices`, or set the system defaults")
    return CheckResult("audio", "ok", summary)


def check_espeak(which: Callable[[str], str | None] = shutil.which) -> CheckResult:
    """espeak-ng gives the emulator its voice (and the tests their speech)."""
    fix = "apt-get install espeak-ng"
    if which("espeak-ng") is None:
        return CheckResult("espeak-ng", "warn", "espeak-ng not found: the emulator speaks a synthetic "
                           "tone instead of speech", fix=fix)
    try:
        proc = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True,
                              timeout=ESPEAK_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return CheckResult("espeak-ng", "warn", f"espeak-ng does not run ({exc}): the emulator falls "
                           "back to a synthetic tone", fix=fix)
    match = re.search(r"text-to-speech:\s*(\S+)", proc.stdout)
    if proc.returncode != 0 or match is None:
        return CheckResult("espeak-ng", "warn", f"espeak-ng --version failed ({proc.returncode}): the "
                           "emulator falls back to a synthetic tone", fix=fix)
    return CheckResult("espeak-ng", "ok", f"espeak-ng {match.group(1)}")


def check_asr(installed: Callable[[], bool] | None = None) -> CheckResult:
    """The asr extra lets the emulator hear what the user said (`when:` on speech, `heard:` in tests)."""
    from runner.emulator import asr

    name = "speech recognition"
    if not (installed or asr.whisper_installed)():
        return CheckResult(name, "warn", "the emulator does not transcribe speech (typed text still "
                           "works); `when:` turns and `heard:` expectations need text or the asr extra",
                           fix=asr.INSTALL_HINT)
    try:
        directory = asr.whisper_model_dir()
    except RunnerError as exc:
        return CheckResult(name, "fail", str(exc), fix=asr.INSTALL_HINT)
    chosen = os.environ.get(asr.ENV_VAR)
    off = f" (turned off by ${asr.ENV_VAR}={chosen})" if chosen == "none" else ""
    return CheckResult(name, "ok", f"Whisper tiny.en, checksums match ({directory}){off}")


# --- the agent file -----------------------------------------------------------------------------

def check_agent_file(path: Path) -> tuple[CheckResult, AgentConfig | None]:
    from runner.config.loader import check_agent
    from runner.config.report import count, summary

    config, problems = check_agent(path)
    errors, warnings = count(problems)
    details = tuple(p.format() for p in problems[:10])
    if len(problems) > 10:
        details += (f"... and {len(problems) - 10} more (agent-run check {path})",)
    line = summary(1, problems).replace("1 file checked", str(path))
    if errors:
        return CheckResult("agent", "fail", line, fix=f"fix the errors listed (agent-run check {path})",
                           details=details), None
    if warnings:
        return CheckResult("agent", "warn", line, fix=f"see the warnings (agent-run check {path})",
                           details=details), config
    return CheckResult("agent", "ok", f"{line} ({config.model.id if config else '?'}, "
                       f"voice {config.voice if config else '?'})"), config


# --- all together -------------------------------------------------------------------------------

@dataclass
class _Context:
    """What later checks need from earlier ones."""

    env: dict[str, str]
    profile: AwsProfile
    agent: AgentConfig | None = None
    region: RegionFinding = field(default_factory=lambda: RegionFinding(None, ""))
    connector: Connector | None = None


async def diagnose(options: DoctorOptions, *, env: Mapping[str, str] | None = None,
                   home: Path | None = None) -> list[CheckResult]:
    env = dict(os.environ if env is None else env)
    ctx = _Context(env=env, profile=read_aws_profile(env, home or Path.home(), options.profile))
    results = [check_python(), sdk := check_sdk()]
    agent_result = None
    if options.agent is not None:
        agent_result, ctx.agent = check_agent_file(options.agent)
    agent_model = ctx.agent.model if ctx.agent else None
    ctx.region = find_region(agent_model.region if agent_model else None, env, ctx.profile,
                             str(options.agent))
    results.append(check_region(ctx.region))
    region = ctx.region.region or DEFAULT_REGION
    endpoint = bedrock_endpoint(agent_model.endpoint if agent_model else None, env, region)
    setup, templates = _setup_and_templates(ctx.agent)
    try:
        if sdk.status == "ok":
            agent_endpoint = agent_model.endpoint if agent_model else None
            results.append(await _check_credentials(ctx, options, agent_endpoint))
            results.append(await check_bedrock(endpoint, offline=options.offline, connector=ctx.connector,
                                               setup=setup, templates=templates, region=region))
        else:
            for name in ("credentials", "bedrock"):
                results.append(CheckResult(name, "skipped", "needs the Bedrock SDK",
                                           fix="fix the bedrock-sdk check above"))
    finally:
        if ctx.connector is not None:
            await ctx.connector.aclose()
    if options.emulate:
        if sdk.status == "ok":
            results.append(await check_emulator(setup, templates, region))
        else:
            results.append(CheckResult("emulator", "skipped", "needs the Bedrock SDK",
                                       fix="fix the bedrock-sdk check above"))
    results += [check_audio(), check_espeak(), check_asr()]
    if agent_result is not None:
        results.append(agent_result)
    if options.emulate:
        results = for_offline_work(results)
    return redact(results, _secrets(env, ctx.profile))


# --- --emulate: ready for offline work, and what real Bedrock would still need --------------------

# Checks only a run against real Bedrock depends on; `--emulate` brings its own region and keys.
BEDROCK_ONLY = ("region", "credentials", "bedrock")
_NEEDS = {"region": "an AWS region (model.region or AWS_REGION)",
          "credentials": "AWS credentials",
          "bedrock": "model access (checked only with credentials and network)"}


def for_offline_work(results: list[CheckResult]) -> list[CheckResult]:
    """With --emulate: a failure of what only real Bedrock needs is a warning, not a failure."""
    return [replace(r, status="warn", summary=f"{r.summary} (needed for real Bedrock only)")
            if r.name in BEDROCK_ONLY and r.status == "fail" else r for r in results]


def bedrock_needs(results: list[CheckResult]) -> list[str]:
    """What a run against real Bedrock still needs: the Bedrock-only checks that are not ok."""
    needs = []
    for r in results:
        if r.name in BEDROCK_ONLY and r.status != "ok":
            # A region that is set but not known to offer Nova Sonic needs another region, not one.
            unusual = r.name == "region" and not r.summary.startswith("no AWS region")
            needs.append("a region where Nova Sonic is offered" if unusual else _NEEDS[r.name])
    return needs


def readiness(results: list[CheckResult], emulate: bool) -> dict[str, object]:
    """The verdict for `--json`: ready, and with --emulate what real Bedrock still needs."""
    ready = exit_code(results) == 0
    if not emulate:
        return {"ok": ready}
    return {"ok": ready, "offline_ready": ready, "bedrock_needs": bedrock_needs(results)}


async def _check_credentials(ctx: _Context, options: DoctorOptions, endpoint: str | None) -> CheckResult:
    start = time.monotonic()
    try:
        # The connector a run would open: the Bedrock check below probes the model through it.
        ctx.connector = await open_bedrock(ctx.region.region, endpoint, options.profile)
    except TimeoutError:
        return CheckResult("credentials", "fail",
                           f"resolving AWS credentials took longer than {CREDENTIALS_TIMEOUT_S:.0f} s",
                           fix="check credential_process in your profile, or export the keys")
    except TransportError as exc:
        message = _first_sentence(str(exc))
    except Exception as exc:  # the SDK's own config errors (e.g. ProfileNotFoundError) are not translated
        message = f"cannot resolve AWS settings: {type(exc).__name__}: {exc}"
    else:
        return describe_credentials(ctx.connector.info, ctx.env, ctx.profile, datetime.now(UTC))
    return CheckResult("credentials", "fail", message, fix=credentials_fix(ctx.env, ctx.profile),
                       details=(f"resolved in {time.monotonic() - start:.2f} s", *ctx.profile.problems))


def _first_sentence(text: str) -> str:
    # The transport's message carries its own advice; doctor shows its fix on a separate line.
    return text.partition(". ")[0]


def _setup_and_templates(agent: AgentConfig | None) -> tuple[SessionSetup | None, EventTemplates]:
    from runner.config.setup import session_setup
    from runner.config.templates import load_event_templates

    if agent is None:
        return None, load_event_templates()
    return session_setup(agent), agent.templates


def _secrets(env: Mapping[str, str], profile: AwsProfile) -> tuple[str, ...]:
    values = [env.get(k, "") for k in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")]
    values += [*profile.secrets, profile.access_key_id or ""]
    # Short values would match ordinary words; real secrets are far longer than 8 characters.
    return tuple(v for v in values if len(v) > 8)


def redact(results: list[CheckResult], secrets: tuple[str, ...]) -> list[CheckResult]:
    def scrub(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, mask_key_id(secret))
        return text

    return [replace(r, summary=scrub(r.summary), fix=scrub(r.fix) if r.fix else None,
                    details=tuple(scrub(d) for d in r.details)) for r in results]


def format_report(results: list[CheckResult], emulate: bool = False) -> str:
    """One line per check (status, name, summary); the fix and details indented below it."""
    width = max(len(r.name) for r in results)
    lines = []
    for r in results:
        lines.append(f"{r.status:<7} {r.name:<{width}}  {r.summary}")
        lines += [f"{'':<7} {'':<{width}}    {d}" for d in r.details]
        if r.fix and r.status != "ok":
            lines.append(f"{'':<7} {'':<{width}}  fix: {r.fix}")
    counts = {s: sum(r.status == s for r in results) for s in STATUSES}
    ready = exit_code(results) == 0
    verdict = ": ready" if ready else ": not ready"
    if emulate:
        verdict += " for offline work (--emulate: the built-in emulator, no AWS account)"
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items()) + verdict)
    if emulate:
        needs = bedrock_needs(results)
        lines.append("real Bedrock still needs: " + "; ".join(needs) + " (see the warnings above)"
                     if needs else "real Bedrock: ready too")
    return "\n".join(lines)
