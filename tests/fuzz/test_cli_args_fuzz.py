"""Command lines generated from the argparse parsers in runner/commands/: every subcommand, its
options with generated values (special numbers, empty, huge, control characters, bytes that are
not UTF-8 as the OS hands them to Python: surrogate escapes).

In-process, the parser answers with a Namespace or exits 0/2 (argparse's usage error) and never
raises anything else; `check` and `render`, which only read files, run whole through
runner.cli.main and return 0, 1 or 2. For a sample, `check`/`render` command lines go through the
real CLI as subprocesses (argv as raw bytes)."""

from __future__ import annotations

import argparse
import contextlib
import io
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.cli import COMMANDS, build_parser, main
from tests.fuzz.conftest import fuzz_settings
from tests.fuzz.invariant import REPO, outcome, run_cli
from tests.fuzz.known_bugs import known_bug_in_output

_VALUES = [
    "",
    " ",
    "0",
    "-0",
    "1",
    "-1",
    "0.5",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "Infinity",
    "1e999",
    "1e-400",
    "9" * 5000,
    "-" + "9" * 5000,
    "0x10",
    "1_000",
    "٣",
    "65536",
    "99999999999999999999",
    "x" * 10_000,
    "a=b",
    "=",
    "a=",
    "=b",
    "name=\udcff",
    "\udcff\udcfe",
    "x\x1b[2J",
    "\u202e",
    "--",
    "-",
    "-x",
    "/dev/zero",
    "/dev/null",
    "/",
    ".",
    "..",
    "agents/orders.yaml",
    "agents/simple.yaml",
    "samples/orders.scenario.yaml",
    "samples/where_is_my_order.wav",
    "nope.yaml",
    "\x00x",
    "city=Paris",
    "city=\udcff",
    "city=\x01\x1b",
    "hotel_name=" + "x" * 5000,
    "agents/concierge.yaml",
    "name=\udcc3\udca9",
    "1,2",
    "default",
    "@file",
]


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: sub for name, sub in action.choices.items() if name in COMMANDS}


SUBPARSERS = _subparsers()
OPTIONS = {
    name: [s for a in p._actions for s in a.option_strings if s not in ("-h", "--help")]
    for name, p in SUBPARSERS.items()
}


@st.composite
def command_lines(draw: st.DrawFn, commands: tuple[str, ...] = COMMANDS) -> list[str]:
    command = draw(st.sampled_from(commands))
    argv = [command] if draw(st.integers(0, 9)) else []  # sometimes the `agent-run AGENT` shorthand
    value = st.one_of(st.sampled_from(_VALUES), st.text(max_size=12))
    for _ in range(draw(st.integers(0, 5))):
        if OPTIONS[command] and draw(st.booleans()):
            argv.append(draw(st.sampled_from(OPTIONS[command])))
            if draw(st.integers(0, 3)):
                argv.append(draw(value))
        else:
            argv.append(draw(value))
    return argv


_FILES = [
    "agents/concierge.yaml",
    "agents/orders.yaml",
    "agents/simple.yaml",
    "samples/orders.scenario.yaml",
    "/dev/null",
    "nope.yaml",
    "agents",
    "\udcff.yaml",
]
_VAR_VALUES = [
    "\udcff\udcfe",
    "caf\udcc3",
    "\x00",
    "a\x1bb",
    "x" * 5000,
    "{{ city }}",
    "{% raw %}",
    "",
    "nan",
    "\ud800",
]
_VAR_NAMES = ["city", "hotel_name", "breakfast_until", "timezone", "nope", "", "1x"]


@st.composite
def file_command_lines(draw: st.DrawFn) -> list[str]:
    """`check`/`render` lines shaped like real use: an agent file, one or two `--var NAME=VALUE`
    naming the sample agents' variables with special values, maybe --json."""
    command = draw(st.sampled_from(["check", "render"]))
    argv = [command]
    if command == "check" and draw(st.booleans()):
        argv.append("--json")
    for _ in range(draw(st.integers(1, 2))):
        value = draw(st.one_of(st.sampled_from(_VAR_VALUES), st.sampled_from(_VALUES), st.text(max_size=12)))
        argv += ["--var", f"{draw(st.sampled_from(_VAR_NAMES))}={value}"]
    argv.append(
        draw(st.sampled_from(["agents/concierge.yaml", *_FILES]))
    )  # the agent with variables twice as often
    return argv


def _passable(arg: str) -> bool:
    """Whether the OS can pass `arg` (a lone \ud800 is no byte sequence; \udcff is byte 0xff)."""
    try:
        os.fsencode(arg)
    except UnicodeEncodeError:
        return False
    return True


def _quiet(call: object, err: io.StringIO | None = None) -> object:
    def run() -> object:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err or io.StringIO()):
            return call()  # type: ignore[operator]

    return run


@fuzz_settings(150)
@given(argv=command_lines())
def test_every_generated_command_line_parses_or_is_a_usage_error(argv: list[str]) -> None:
    parser = build_parser()
    argv = [a for a in argv if "\x00" not in a] if argv[:1] == ["run"] else argv
    result = outcome(_quiet(lambda: parser.parse_args(argv)), allowed=(SystemExit,))
    if isinstance(result, SystemExit):
        assert result.code in (0, 2), (argv, result.code)
    else:
        assert isinstance(result, argparse.Namespace)


@pytest.fixture(autouse=True)
def _at_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)


@fuzz_settings(60)
@given(argv=st.one_of(command_lines(("check", "render")), file_command_lines()))
def test_check_and_render_command_lines_exit_0_1_or_2_in_process(argv: list[str]) -> None:
    argv = [a for a in argv if "\x00" not in a]  # exec() cannot pass a NUL: no real command line has one
    err = io.StringIO()
    result = outcome(_quiet(lambda: main(argv), err), allowed=(SystemExit,))
    code = result.code if isinstance(result, SystemExit) else result
    if code == 3 and known_bug_in_output(err.getvalue()):
        return  # a known open bug (known_bugs.py)
    assert code in (0, 1, 2), (argv, result, err.getvalue()[-3000:])


@fuzz_settings(3)
@given(argv=file_command_lines())
def test_check_and_render_command_lines_through_the_real_cli(
    argv: list[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    # As the OS passes them: bytes (surrogate escapes are the undecodable bytes), no NUL possible.
    raw = [os.fsencode(a) for a in argv if "\x00" not in a and _passable(a)]
    result = run_cli(*[os.fsdecode(a) for a in raw], tolerate_known=True)
    if "--json" in argv and result.code in (0, 1) and not result.known_bug:
        assert result.stdout.lstrip()[:1] in ("[", "{", ""), result.describe()
