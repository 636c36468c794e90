"""Issue 13: a tool's `input_schema` never makes the runner fetch a `$ref`, at check or at run time.

`check` refuses non-local references (tests/config/test_hostile_values_cli.py); these tests cover
the run-time validator itself, the one place tool schemas are compiled, with a real HTTP server on
127.0.0.1 that counts the requests it gets: jsonschema's default registry fetched such URLs.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from runner.config.schema import reference_problem, schema_depth_path, schema_references
from runner.tools.invoke import validate_arguments


class _Counting(http.server.BaseHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        body = b'{"type": "string"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Counting.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_runtime_validator_never_fetches_a_remote_ref(server: str) -> None:
    schema = {"type": "object", "properties": {"timezone": {"$ref": f"{server}/tz.json"}}}
    problem = validate_arguments({"timezone": 3}, schema)
    assert _Counting.requests == []  # before: GET /tz.json, and its schema was applied
    assert problem is not None and "cannot be resolved" in problem and f"{server}/tz.json" in problem


def test_the_runtime_validator_never_reads_a_file_ref(tmp_path: Path) -> None:
    (tmp_path / "tz.json").write_text('{"type": "string"}')
    schema = {"type": "object", "properties": {"timezone": {"$ref": (tmp_path / "tz.json").as_uri()}}}
    problem = validate_arguments({"timezone": 3}, schema)
    assert problem is not None and "cannot be resolved" in problem


def test_local_refs_and_meta_schemas_still_resolve() -> None:
    schema = {"type": "object", "$defs": {"tz": {"type": "string"}},
              "properties": {"timezone": {"$ref": "#/$defs/tz"},
                             "schema": {"$ref": "https://json-schema.org/draft/2020-12/schema"}}}
    assert validate_arguments({"timezone": "UTC", "schema": {"type": "string"}}, schema) is None
    assert validate_arguments({"timezone": 3}, schema) == "timezone: 3 is not of type 'string'"


def test_references_are_found_and_judged() -> None:
    schema = {"type": "object", "$defs": {"a": {"type": "string"}},
              "properties": {"x": {"$ref": "#/$defs/a"}, "y": {"items": [{"$dynamicRef": "other.json"}]},
                             "z": {"$ref": "#/$defs/missing"}}}
    found = dict(schema_references(schema))
    assert found == {("properties", "x", "$ref"): "#/$defs/a",
                     ("properties", "y", "items", 0, "$dynamicRef"): "other.json",
                     ("properties", "z", "$ref"): "#/$defs/missing"}
    assert reference_problem(schema, "#/$defs/a") is None
    assert "not a reference inside this schema" in (reference_problem(schema, "other.json") or "")
    assert "does not point at anything" in (reference_problem(schema, "#/$defs/missing") or "")


def test_schema_depth_is_measured_without_recursion() -> None:
    deep: dict[str, object] = {}
    node = deep
    for _ in range(100_000):  # far past Python's recursion limit
        node["items"] = {}
        node = node["items"]  # type: ignore[assignment]
    path = schema_depth_path(deep)
    assert path is not None and len(path) == 32
    assert schema_depth_path({"properties": {"a": {"type": "string"}}}) is None
