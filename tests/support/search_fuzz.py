"""Hypothesis properties for search, run in a child process by test_search_fuzz.py (a crash
inside Tantivy would otherwise take pytest down with it).

``python -m tests.support.search_fuzz INDEX_RESULTS CONFIG EXAMPLES LAST_INPUT_FILE``: each input
is written to LAST_INPUT_FILE before it is tried, so a crash names the input that caused it.
"""

from __future__ import annotations

import contextlib
import io
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import imganalyzer.search.query as search_module
from imganalyzer.cli.main import main
from imganalyzer.layout import Layout
from imganalyzer.search.query import Filters, Hit, ModuleNotRunError, SearchIndex, SearchInputError

SYNTAX = list('()[]{}"\':+-^~*\\/!<>=&|?., \t\n') + [
    "AND ", "OR ", "NOT ", " TO ", "caption:", "camera:", "date:", "key:", "*", "IN ",
    "eiffel", "tower", "9999999999999999999999", "-1e308", "\x00", "\udce9", "é", "🙂",
]  # fmt: skip
FIELD_NAMES = ["caption", "date", "aesthetic", "key", "folder", "nope", "has_text", "iso"]

syntax_soup = st.lists(st.sampled_from(SYNTAX), max_size=60).map("".join)
deep = st.builds(
    lambda n, opener, inner: opener * n + inner + ")" * (n // 2),
    st.one_of(st.integers(0, 40), st.integers(0, 6000)),  # within the bound and far beyond
    st.sampled_from(["(", "[", "{", "(a ", '("', "-(", "+(", "NOT ("]),
    st.text(max_size=5),
)
fielded = st.builds(
    lambda f, v: f"{f}:{v}",
    st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=5)),
    st.sampled_from(["*", "x", "[1 TO 2]", '"a b"', "(a OR b)", "", ">3", "true", "2021-01-01"]),
)
ranges = st.builds(
    lambda f, a, b, op: f"{f}:{op[0]}{a} TO {b}{op[1]}",
    st.sampled_from(FIELD_NAMES),
    st.one_of(st.integers(), st.floats(), st.text(max_size=8)),
    st.one_of(st.integers(), st.floats(), st.text(max_size=8)),
    st.sampled_from(["[]", "{}", "[}", "{]", "(("]),
)
queries = st.one_of(
    st.text(max_size=200),
    syntax_soup,
    fielded,
    deep,
    ranges,
    st.text(alphabet=st.characters(codec=None), min_size=900, max_size=1200),
)
numbers = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 10_000, 10_001, 10**11, 2**63, 2**64 + 1]),
)
anything = st.one_of(numbers, st.text(max_size=30), st.none(), st.booleans())
dates = st.one_of(
    st.none(),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
    st.text(max_size=10),
)
valid_filters = st.builds(
    Filters,
    after=st.one_of(st.none(), st.datetimes(datetime(1800, 1, 1), datetime(2199, 1, 1))),
    camera=st.one_of(st.none(), syntax_soup),
    person=st.one_of(st.none(), st.sampled_from(["alice", "Bob", "alice bob", '"', "(("])),
    has_text=st.booleans(),
    min_aesthetic=st.one_of(st.none(), st.floats(0, 10)),
    min_sharpness=st.one_of(st.none(), st.floats(0, 1e6)),
    near=st.one_of(
        st.none(), st.tuples(st.floats(-90, 90), st.floats(-180, 180), st.floats(0.001, 20_000))
    ),
    folder=st.one_of(st.none(), st.sampled_from(["2021", "/2022/home/", "2023/caf\udce9"])),
)
random_filters = st.builds(
    Filters,
    after=dates,
    before=dates,
    camera=st.one_of(st.none(), queries),
    lens=st.one_of(st.none(), syntax_soup),
    person=st.one_of(st.none(), syntax_soup),
    has_text=st.booleans(),
    min_aesthetic=st.one_of(st.none(), numbers),
    min_sharpness=st.one_of(st.none(), numbers),
    near=st.one_of(st.none(), st.tuples(numbers, numbers, numbers), anything),
    folder=st.one_of(st.none(), syntax_soup, st.text(max_size=50)),
)


def mostly(valid: st.SearchStrategy, invalid: st.SearchStrategy) -> st.SearchStrategy:
    """Nine draws in ten from ``valid``: the query reaches Tantivy most of the time."""
    return st.integers(0, 9).flatmap(lambda k: invalid if k == 0 else valid)


filters = mostly(st.one_of(st.just(Filters()), valid_filters), random_filters)
limits = mostly(st.integers(1, 100), numbers)
modes = mostly(st.sampled_from(["text", "text", "semantic", "hybrid"]), st.text(max_size=8))
option_values = st.one_of(
    numbers.map(str), st.text(max_size=40), syntax_soup, st.sampled_from(["", "-", "--", "nan"])
)
OPTIONS = [
    "--limit", "--after", "--before", "--near", "--min-aesthetic", "--min-sharpness",
    "--camera", "--lens", "--person", "--folder", "--mode",
]  # fmt: skip
valid_options = st.sampled_from([
    ("--limit", "5"), ("--after", "2021-06"), ("--before", "2022"), ("--near", "48.8,2.3,50"),
    ("--min-aesthetic", "4.5"), ("--camera", "X-T4"), ("--person", "alice"), ("--mode", "text"),
    ("--folder", "2021"), ("--has-text",),
])  # fmt: skip
cli_options = st.lists(
    st.one_of(valid_options, valid_options, st.tuples(st.sampled_from(OPTIONS), option_values)),
    max_size=4,
)


def encode_text(text: str) -> np.ndarray:
    seed = abs(hash(text)) % 2**32
    vector = np.random.default_rng(seed).standard_normal(8).astype(np.float32)
    return vector / np.linalg.norm(vector)


class Fuzz:
    def __init__(self, results: Path, config: Path, examples: int, last_input: Path) -> None:
        self.index = SearchIndex(Layout(results))
        self.config = config
        self.examples = examples
        self.last_input = last_input
        self.counts = {"results": 0, "clean errors": 0, "cli exit 0": 0, "cli exit 1 or 2": 0}

    def note(self, *values: object) -> None:
        self.last_input.write_text(repr(values), encoding="utf-8")

    def library(self) -> None:
        @settings(max_examples=self.examples, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(queries, modes, filters, limits)
        @example("0:*", "text", Filters(), 1)  # once a ValueError from inside the search
        @example("(" * 5000, "text", Filters(), 1)  # once a segfault
        @example("x", "text", Filters(), 0)  # once a panic
        def search(text: str, mode: str, conditions: Filters, limit: object) -> None:
            self.note("search", text, mode, conditions, limit)
            try:
                hits = self.index.search(text, mode, conditions, limit, encode_text)
            except (SearchInputError, ModuleNotRunError) as error:
                assert "\n" not in str(error) and str(error)
                self.counts["clean errors"] += 1
                return
            assert isinstance(hits, list) and all(isinstance(h, Hit) for h in hits)
            assert len(hits) <= limit
            self.counts["results"] += 1

        @settings(max_examples=self.examples // 4, deadline=None, database=None, derandomize=True)
        @given(st.one_of(st.text(max_size=50), st.sampled_from(["2021/paris/eiffel.jpg"])),
               filters, limits)  # fmt: skip
        def similar(path: str, conditions: Filters, limit: object) -> None:
            self.note("similar", path, conditions, limit)
            try:
                hits = self.index.similar(path, conditions, limit)
            except (SearchInputError, ModuleNotRunError, LookupError) as error:
                assert "\n" not in str(error) and str(error)
                return
            assert all(isinstance(h, Hit) for h in hits)

        search()
        similar()

    def command_line(self) -> None:
        search_module.clip_text_encoder = lambda config: encode_text

        @settings(max_examples=self.examples // 2, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(st.sampled_from(["search", "similar"]), queries, cli_options, st.booleans())
        def run(command: str, query: str, options: list, as_json: bool) -> None:
            argv = [command, query, *[p for pair in options for p in pair]]
            argv += ["--config", str(self.config)] + (["--json"] if as_json else [])
            self.note("cli", argv)
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                rejected = False
                try:
                    status = main(argv)
                except SystemExit as stop:  # argparse rejected an option
                    status, rejected = stop.code, True
            messages = [line for line in err.getvalue().splitlines() if line.strip()]
            assert status in (0, 1, 2), (status, messages)
            self.counts["cli exit 0" if status == 0 else "cli exit 1 or 2"] += 1
            assert "Traceback" not in err.getvalue()
            if rejected:  # argparse: the usage, then one line naming the option
                assert messages[0].startswith("usage:") and "error: " in messages[-1]
            elif status:
                assert len([m for m in messages if not m.startswith("imganalyzer: words")]) == 1
            out.getvalue().encode("utf-8")  # printable whatever the paths hold

        run()


if __name__ == "__main__":
    results, config, examples, last_input = sys.argv[1:5]
    fuzz = Fuzz(Path(results), Path(config), int(examples), Path(last_input))
    fuzz.library()
    fuzz.command_line()
    print(f"fuzz done: {fuzz.counts}")
