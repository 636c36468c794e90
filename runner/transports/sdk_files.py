"""The files the AWS SDK reads on the user's say-so, checked before the SDK is even imported.

The SDK reads the shared credentials and config files (AWS_SHARED_CREDENTIALS_FILE,
AWS_CONFIG_FILE, else ~/.aws/...), and the CA bundle (SSL_CERT_FILE, AWS_CA_BUNDLE) is read when
the SDK is imported (aiohttp builds an SSL context at import time). All of them are read blocking:
a FIFO hung the run beyond any signal, and /dev/zero ate the memory until the kernel killed it. So
each that exists must be a regular file of sane size (runner/files.py's check), and this module
imports nothing of the SDK.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from runner.errors import CredentialsError
from runner.files import UnreadableFileError, check_user_file

SDK_FILES = (("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"), ("AWS_CONFIG_FILE", "~/.aws/config"),
             ("SSL_CERT_FILE", None), ("AWS_CA_BUNDLE", None))
MAX_SDK_FILE_BYTES = 16 << 20  # a CA bundle is ~200 KiB; credentials files far less


CA_VARIABLES = ("SSL_CERT_FILE", "AWS_CA_BUNDLE")  # read as soon as the SDK is imported


def check_sdk_files(env: Mapping[str, str] | None = None, *,
                    variables: tuple[str, ...] | None = None) -> None:
    """Refuse a credentials, config or CA file (those of `variables`, default all) that is not a
    regular file of sane size (CredentialsError)."""
    env = os.environ if env is None else env
    for variable, default in SDK_FILES:
        if variables is not None and variable not in variables:
            continue
        named = env.get(variable) or default
        if not named:
            continue
        path = Path(os.path.expanduser(named))
        if not os.path.lexists(path):
            continue  # a missing file is the SDK's business (it skips it or says so)
        try:
            check_user_file(path, limit=MAX_SDK_FILE_BYTES, what=f"a {variable} file")
        except UnreadableFileError as exc:
            source = variable if env.get(variable) else "the default"
            raise CredentialsError(f"{exc} ({source} {named!r}); point {variable} at a regular file",
                                   kind="CredentialsError") from None
