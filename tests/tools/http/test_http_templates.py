"""The sans-IO parts of HTTP tools: templates, body templates, JSON pointers, result extraction and
the `http:` block checks (runner/tools/http/)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from runner.errors import ToolError
from runner.httpclient import HttpResponse
from runner.tools.http.config import check_http, display, env_ref_paths
from runner.tools.http.response import compile_result_template, extract_result, resolve_pointer
from runner.tools.http.templates import (
    Context,
    Placeholder,
    TemplateSyntaxError,
    parse_template,
    render_body,
    render_text,
)


def ctx(arguments: dict[str, Any] | None = None, environ: dict[str, str] | None = None) -> Context:
    return Context(arguments or {}, {"lang": "fr", "n": 3}, environ or {})


def response(status: int = 200, body: bytes = b"{}", content_type: str = "application/json",
             reason: str = "OK") -> HttpResponse:
    return HttpResponse(status, reason, MappingProxyType({"content-type": content_type}), body)


# -- text templates -----------------------------------------------------------------------------------

def test_parse_template_pieces() -> None:
    template = parse_template("https://x/{id}/{{literal}}?l={vars.lang}&k=${env:KEY}")
    assert template.pieces == ("https://x/", Placeholder("id", "argument"), "/{literal}?l=",
                               Placeholder("lang", "var"), "&k=", Placeholder("KEY", "env"))
    assert template.placeholders("argument") == ["id"]


@pytest.mark.parametrize("text", ["a { b", "}", "{}", "{a b}", "{vars.}", "{vars.1x}", "{x:>10}"])
def test_bad_braces_are_syntax_errors(text: str) -> None:
    with pytest.raises(TemplateSyntaxError):
        parse_template(text)


def test_url_arguments_are_encoded_whole() -> None:
    template = parse_template("https://x/orders/{id}?q={q}&l={vars.lang}")
    url = render_text(template, ctx({"id": "../admin?x=1#", "q": "a b&c=€"}), url=True)
    assert url == "https://x/orders/..%2Fadmin%3Fx%3D1%23?q=a%20b%26c%3D%E2%82%AC&l=fr"


@pytest.mark.parametrize("value", [".", ".."])
def test_dot_segments_from_arguments_are_refused(value: str) -> None:
    # yarl (and servers) resolve "/orders/../admin", even spelt %2E%2E: the model must not walk up.
    with pytest.raises(ToolError, match="cannot be"):
        render_text(parse_template("https://x/orders/{id}/details"), ctx({"id": value}), url=True)
    assert render_text(parse_template("https://x/{id}"), ctx({"id": "..."}), url=True) == "https://x/..."


def test_values_as_text() -> None:
    template = parse_template("{a}|{b}|{c}|{d}|{missing}|{vars.n}")
    assert render_text(template, ctx({"a": True, "b": 2.5, "c": {"k": [1]}, "d": None})) == \
        'true|2.5|{"k":[1]}|||3'


def test_env_references_resolve_and_are_collected() -> None:
    context = ctx(environ={"KEY": "s3cr3t"})
    assert render_text(parse_template("Bearer ${env:KEY}"), context) == "Bearer s3cr3t"
    assert context.secrets == {"KEY": "s3cr3t"}


def test_a_missing_env_variable_names_it() -> None:
    with pytest.raises(ToolError, match=r"^environment variable KEY is not set$"):
        render_text(parse_template("${env:KEY}"), ctx())


def test_an_argument_that_looks_like_a_reference_is_not_resolved() -> None:
    context = ctx({"q": "${env:KEY}"}, environ={"KEY": "s3cr3t"})
    assert render_text(parse_template("{q}"), context) == "${env:KEY}"
    assert render_body({"q": "{q}", "t": "x {q}"}, context) == {"q": "${env:KEY}", "t": "x ${env:KEY}"}
    assert context.secrets == {}


def test_body_keeps_types_of_whole_placeholders() -> None:
    body = {"id": "{id}", "count": "{n}", "note": "order {id}", "lang": "{vars.lang}",
            "fixed": [1, None, True], "nested": [{"k": "{n}"}]}
    rendered = render_body(body, ctx({"id": "A1", "n": 7}))
    assert rendered == {"id": "A1", "count": 7, "note": "order A1", "lang": "fr", "fixed": [1, None, True],
                        "nested": [{"k": 7}]}


# -- pointers and results -------------------------------------------------------------------------------

def test_json_pointer() -> None:
    doc = {"a": [{"b": 1}, {"c/d": 2, "e~f": 3}], "": 4}
    assert resolve_pointer(doc, "") == doc
    assert resolve_pointer(doc, "/a/0/b") == 1
    assert resolve_pointer(doc, "/a/1/c~1d") == 2
    assert resolve_pointer(doc, "/a/1/e~0f") == 3
    assert resolve_pointer(doc, "/") == 4
    for bad in ("/a/2", "/a/01", "/a/-1", "/x", "/a/0/b/c"):
        with pytest.raises(LookupError, match="nothing at"):
            resolve_pointer(doc, bad)


def test_whole_body_pointer_and_template() -> None:
    res = response(body=json.dumps({"order": {"status": "shipped"}}).encode())
    assert extract_result(res, "GET", "https://x/o", pointer=None, template=None, arguments={}) == \
        {"order": {"status": "shipped"}}
    assert extract_result(res, "GET", "https://x/o", pointer="/order/status", template=None,
                          arguments={}) == "shipped"
    template = compile_result_template("{{ args.id }} is {{ json.order.status }} ({{ status }})")
    assert extract_result(res, "GET", "https://x/o", pointer=None, template=template,
                          arguments={"id": "A1"}) == "A1 is shipped (200)"


def test_a_template_can_read_text_bodies() -> None:
    template = compile_result_template("{{ text | upper }} {{ json is none }}")
    res = response(body=b"plain", content_type="text/plain")
    got = extract_result(res, "GET", "https://x", pointer=None, template=template, arguments={})
    assert got == "PLAIN True"


def test_empty_body_gives_the_status() -> None:
    assert extract_result(response(204, b""), "DELETE", "https://x/o/1", pointer=None, template=None,
                          arguments={}) == {"status": 204}


def test_non_2xx_is_an_error_with_the_start_of_the_body() -> None:
    res = response(404, b'{"detail":   "no such\\norder"}', reason="Not Found")
    with pytest.raises(ToolError) as info:
        extract_result(res, "GET", "https://api.x/orders/9?key=abc", pointer=None, template=None,
                       arguments={})
    assert str(info.value) == \
        'HTTP 404 Not Found from GET https://api.x/orders/9: {"detail": "no such\\norder"}'


def test_error_body_is_cut_short() -> None:
    with pytest.raises(ToolError) as info:
        extract_result(response(500, b"x" * 5000), "GET", "https://x", pointer=None, template=None,
                       arguments={})
    assert len(str(info.value)) < 400


def test_invalid_json_is_an_error() -> None:
    with pytest.raises(ToolError, match=r"not valid JSON \(text/html\): <html>"):
        extract_result(response(body=b"<html>hi</html>", content_type="text/html"), "GET", "https://x",
                       pointer=None, template=None, arguments={})


def test_pointer_to_nothing_is_an_error() -> None:
    with pytest.raises(ToolError, match="nothing at /order"):
        extract_result(response(body=b"{}"), "GET", "https://x", pointer="/order", template=None,
                       arguments={})


def test_a_failing_or_runaway_template_is_an_error() -> None:
    with pytest.raises(ToolError, match="ZeroDivisionError"):
        extract_result(response(), "GET", "https://x", pointer=None,
                       template=compile_result_template("{{ 1 / 0 }}"), arguments={})
    with pytest.raises(ToolError, match="limits"):
        extract_result(response(), "GET", "https://x", pointer=None,
                       template=compile_result_template("{{ 'a' * 10**9 }}"), arguments={})


def test_templates_are_sandboxed() -> None:
    with pytest.raises(ToolError, match=r"SecurityError: access to attribute .__class__. of .str. object"):
        extract_result(response(), "GET", "https://x", pointer=None,
                       template=compile_result_template("{{ ''.__class__.__mro__[1].__subclasses__() }}"),
                       arguments={})


# -- checking an http: block ------------------------------------------------------------------------------

SCHEMA = {"type": "object", "properties": {"order_id": {"type": "string"}, "n": {"type": "integer"}}}


def check(raw: dict[str, Any], environ: dict[str, str] | None = None, folder: Path = Path("/nonexistent")
          ) -> tuple[Any, list[tuple[tuple[str | int, ...], str, str]]]:
    spec, problems = check_http(raw, input_schema=SCHEMA, variables={"lang": "fr"}, folder=folder,
                                inside_folder=lambda rel, path: True, environ=environ or {})
    return spec, [(p.path, p.message, p.severity) for p in problems]


def test_a_good_block_makes_a_spec() -> None:
    spec, problems = check({"url": "https://api.x/orders/{order_id}?l={vars.lang}",
                            "headers": {"Authorization": "Bearer ${env:TOKEN}"}, "retries": 2,
                            "result": {"pointer": "/order"}}, environ={"TOKEN": "t"})
    assert problems == []
    assert spec.method == "GET" and spec.retries == 2 and spec.result_pointer == "/order"
    assert spec.headers == (("Authorization", "Bearer ${env:TOKEN}"),)
    assert display(spec) == "http:GET https://api.x/orders/{order_id}?l={vars.lang}"
    assert env_ref_paths(spec) == [(("headers", "Authorization"), "TOKEN")]


def test_missing_env_variable_is_a_warning_naming_it() -> None:
    spec, problems = check({"url": "https://api.x/?k=${env:API_KEY}", "method": "POST",
                            "body": {"auth": "${env:BODY_KEY}"}})
    assert spec is not None
    assert [(p, s) for p, _, s in problems] == [(("url",), "warning"), (("body", "auth"), "warning")]
    assert "API_KEY" in problems[0][1] and "refuses to start" in problems[0][1]
    assert env_ref_paths(spec) == [(("url",), "API_KEY"), (("body", "auth"), "BODY_KEY")]


@pytest.mark.parametrize(("raw", "where", "words"), [
    ({"url": "https://x/{nope}"}, ("url",), "{nope} is not an argument"),
    ({"url": "https://x/{vars.nope}"}, ("url",), "no such variable"),
    ({"url": "https://{order_id}.x.com/"}, ("url",), "scheme or host"),
    ({"url": "https://x.com:{n}/"}, ("url",), "scheme or host"),
    ({"url": "{order_id}"}, ("url",), "scheme or host"),
    ({"url": "ftp://x/"}, ("url",), "must start with https://"),
    ({"url": "http://api.example.com/"}, ("url",), "plain http:// to api.example.com is refused"),
    ({"url": "https://x/", "headers": {"A": "${env:}"}}, ("headers", "A"), "not a valid environment"),
    ({"url": "https://x/", "headers": {"A": "{"}}, ("headers", "A"), "lone '{'"),
    ({"url": "https://x/", "body": {"a": 1}}, ("body",), "a GET request has no body"),
    ({"url": "https://x/", "method": "POST", "body": ["{zz}"]}, ("body", 0), "{zz} is not an argument"),
    ({"url": "https://x/", "method": "POST", "retries": 1}, ("retries",), "only for idempotent methods"),
    ({"url": "https://x/", "result": {"template": "{% if %}"}}, ("result", "template"), "syntax error"),
    ({"url": "https://x/", "ca_file": "missing.pem"}, ("ca_file",), "is not a file"),
    ({"url": "https://x/", "method": "PUT", "body": {"d": [date(2026, 1, 1)]}}, ("body", "d", 0), "no JSON"),
])
def test_block_errors(raw: dict[str, Any], where: tuple[str | int, ...], words: str) -> None:
    spec, problems = check(raw)
    assert spec is None
    assert any(p == where and words in m and s == "error" for p, m, s in problems), problems


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/x", "http://localhost/x", "http://[::1]/x",
                                 "http://127.0.0.1:{vars.lang}/x"])
def test_plain_http_to_loopback_is_allowed(url: str) -> None:
    assert check({"url": url})[1] == []


def test_plain_http_elsewhere_with_allow_http() -> None:
    spec, problems = check({"url": "http://api.example.com/", "allow_http": True})
    assert problems == [] and spec.allow_http


def test_url_from_a_reference_is_left_to_the_request() -> None:
    spec, problems = check({"url": "${env:BASE}/orders/{order_id}"}, environ={"BASE": "https://x"})
    assert problems == [] and spec is not None


def test_ca_file_is_resolved(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("pem")
    spec, problems = check({"url": "https://x/", "ca_file": "ca.pem"}, folder=tmp_path)
    assert problems == [] and spec.ca_file == (tmp_path / "ca.pem").resolve()
