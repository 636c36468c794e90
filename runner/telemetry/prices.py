"""What a conversation's tokens cost: a price table per model, in US dollars per 1,000 tokens.

The built-in table is an estimate (dated PRICES_DATE): Nova Sonic v1 from AWS's Bedrock pricing
page at its launch, Nova 2 Sonic from aggregator figures (nova-2-and-serving.md; unverified).
Prices differ by region and change; a run can point AGENT_RUN_PRICES at a YAML or JSON file
whose entries replace (per model) or add to the built-in ones:

    amazon.nova-2-sonic-v1:0:
      input_speech: 0.003      # USD per 1,000 tokens
      input_text: 0.00033
      output_speech: 0.012
      output_text: 0.00275

Model ids are looked up without a cross-region profile prefix (`us.amazon.…` costs as `amazon.…`).
A bad file is an error naming FILE:LINE:COL, raised before the run connects.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from runner.config.yaml import YamlSyntaxError, load
from runner.errors import RunnerError
from runner.models import base_model_id
from runner.protocol.events import TokenCounts

PRICES_ENV = "AGENT_RUN_PRICES"
PRICES_DATE = "2026-11-30"
# A price file is a few lines; anything bigger is a mistake (a WAV named by accident).
MAX_PRICE_FILE_BYTES = 1_000_000


@dataclass(frozen=True, slots=True)
class Prices:
    """US dollars per 1,000 tokens of each kind (the kinds of a usageEvent)."""

    input_speech: float
    input_text: float
    output_speech: float
    output_text: float

    def cost(self, tokens: TokenCounts) -> float:
        return (tokens.input_speech * self.input_speech + tokens.input_text * self.input_text
                + tokens.output_speech * self.output_speech + tokens.output_text * self.output_text) / 1000


PRICE_KEYS = tuple(f.name for f in fields(Prices))

BUILTIN_PRICES: Mapping[str, Prices] = {
    # AWS Bedrock pricing page (us-east-1, on-demand) when Nova Sonic launched.
    "amazon.nova-sonic-v1:0": Prices(input_speech=0.0034, input_text=0.00006,
                                     output_speech=0.0136, output_text=0.00024),
    # Aggregator figures per million tokens: speech in $3, text in $0.33, speech out $12, text out $2.75.
    "amazon.nova-2-sonic-v1:0": Prices(input_speech=0.003, input_text=0.00033,
                                       output_speech=0.012, output_text=0.00275),
}


@dataclass(frozen=True, slots=True)
class PriceTable:
    prices: Mapping[str, Prices]
    source: str  # "built-in (DATE)" or the override file

    def for_model(self, model_id: str) -> Prices | None:
        return self.prices.get(model_id) or self.prices.get(base_model_id(model_id))

    def cost(self, model_id: str, tokens: TokenCounts) -> float | None:
        """The estimated cost in USD, or None for a model the table does not price."""
        prices = self.for_model(model_id)
        return None if prices is None else prices.cost(tokens)


BUILTIN_TABLE = PriceTable(BUILTIN_PRICES, f"built-in ({PRICES_DATE})")

_cache: dict[tuple[str, int, int], PriceTable] = {}


def price_table(environ: Mapping[str, str] | None = None) -> PriceTable:
    """The built-in table, or it updated from the file AGENT_RUN_PRICES names (RunnerError if bad)."""
    env = os.environ if environ is None else environ
    name = env.get(PRICES_ENV, "")
    if not name:
        return BUILTIN_TABLE
    path = Path(name)
    try:
        st = path.stat()
    except OSError as exc:
        raise RunnerError(f"{PRICES_ENV}={name}: cannot read the price file: {exc.strerror}") from None
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _cache:  # each conversation of `serve` asks; the file is read once
        _cache.clear()
        _cache[key] = load_price_file(path)
    return _cache[key]


def load_price_file(path: Path) -> PriceTable:
    try:
        if path.stat().st_size > MAX_PRICE_FILE_BYTES:
            raise RunnerError(f"{path}: a price file is at most {MAX_PRICE_FILE_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RunnerError(f"{path}: cannot read the price file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise RunnerError(f"{path}: the price file is not UTF-8 text") from None
    try:
        doc = load(text)
    except YamlSyntaxError as exc:
        raise RunnerError(f"{path}:{exc.mark.line}:{exc.mark.col}: {exc.message}") from None

    def fail(where: tuple[str | int, ...], message: str) -> RunnerError:
        mark = doc.locate(where)
        return RunnerError(f"{path}:{mark.line}:{mark.col}: {message}")

    if not isinstance(doc.data, dict) or not doc.data:
        raise fail((), "a price file maps model ids to prices (USD per 1,000 tokens), e.g. "
                       "`amazon.nova-2-sonic-v1:0: {input_speech: 0.003, input_text: 0.00033, "
                       "output_speech: 0.012, output_text: 0.00275}`")
    table = dict(BUILTIN_PRICES)
    for model, entry in doc.data.items():
        if not isinstance(model, str) or not model:
            raise fail((), f"model ids are text, not {model!r}")
        if not isinstance(entry, dict):
            raise fail((model,), f"{model}: expected a mapping of {', '.join(PRICE_KEYS)} "
                                 "(USD per 1,000 tokens)")
        unknown = sorted(str(k) for k in entry if k not in PRICE_KEYS)
        if unknown:
            raise fail((model, unknown[0]), f"{model}: unknown key {unknown[0]!r} "
                                            f"(expected {', '.join(PRICE_KEYS)})")
        missing = [k for k in PRICE_KEYS if k not in entry]
        if missing:
            raise fail((model,), f"{model}: missing {', '.join(missing)} (USD per 1,000 tokens)")
        values: dict[str, float] = {}
        for key in PRICE_KEYS:
            value = entry[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                    or value < 0:
                raise fail((model, key), f"{model}.{key}: expected a number >= 0 (USD per 1,000 tokens), "
                                         f"got {value!r}")
            values[key] = float(value)
        table[model] = Prices(**values)
    return PriceTable(table, str(path))
