"""InfluxQL text to :mod:`statements`, with InfluxDB-like one-line errors.

One LALR parser (``grammar.lark``) built once per process; a query is
parsed in one pass and turned into frozen statement values by a
transformer, so nothing downstream deals with parse trees.
"""

from __future__ import annotations

import functools
import os
import re
import threading
import zoneinfo

from lark import Lark, Token, v_args
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, VisitError
from lark.visitors import Transformer_NonRecursive

from . import statements as st

GRAMMAR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "grammar.lark")
#: Longest query text taken: Grafana's queries are a few hundred bytes.
MAX_QUERY_LENGTH = 64 * 1024

_UNIT_NS = {"ns": 1, "u": 1_000, "us": 1_000, "µ": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
            "m": 60_000_000_000, "h": 3_600_000_000_000, "d": 86_400_000_000_000, "w": 604_800_000_000_000}
_DURATION_PART = re.compile(r"(\d+)(ns|us|u|µ|ms|s|m|h|d|w)")
_IDENT_ESCAPES = {'\\"': '"', "\\\\": "\\", "\\n": "\n"}
_STRING_ESCAPES = {"\\'": "'", "\\\\": "\\", "\\n": "\n"}


class ParseError(ValueError):
    """The text is not a query of the supported subset; the message is the
    one-line reason InfluxDB's ``error parsing query: ...`` carries."""


def duration_ns(text: str) -> int:
    total = 0
    for number, unit in _DURATION_PART.findall(text):
        total += int(number) * _UNIT_NS[unit]
    return total


def _unescape(body: str, escapes: dict) -> str:
    return re.sub(r"\\.", lambda m: escapes.get(m[0], m[0]), body)


#: A repeated group that itself repeats (``(a+)+``): Python's backtracking
#: engine can take exponential time on it where InfluxDB's (RE2) cannot, so
#: such a pattern from a client is refused rather than left to hold a thread.
_NESTED_REPEAT = re.compile(r"\((?:[^()\\]|\\.)*(?:[+*]|\{\d*,\d*\})(?:[^()\\]|\\.)*\)(?:[+*]|\{\d*,?\d*\})")


def _regex(token: str) -> re.Pattern:
    body = token[1:-1].replace("\\/", "/")
    if _NESTED_REPEAT.search(body):
        raise ParseError(f"regular expression /{body}/ repeats a repeated group; write it without nesting")
    try:
        return re.compile(body)
    except re.error as exc:
        raise ParseError(f"invalid regular expression /{body}/: {exc}") from None


def _name(token) -> str:
    text = str(token)
    if isinstance(token, Token) and token.type == "QUOTED_IDENT":
        return _unescape(text[1:-1], _IDENT_ESCAPES)
    return text


def _int(token) -> int:
    return int(str(token))


@v_args(inline=True)
class _Build(Transformer_NonRecursive):
    # -- top level -------------------------------------------------------
    def start(self, *items):
        stmts, after_statement = [], False
        for item in items:
            if isinstance(item, Token) and item.type == "SEMI":
                after_statement = False
                continue
            if after_statement:
                raise ParseError("found a statement after another without a ';' between them")
            stmts.append(item)
            after_statement = True
        return stmts

    # -- SELECT ------------------------------------------------------------
    def select(self, fields, sources, *clauses):
        kw = {}
        for clause in clauses:
            if clause is not None:
                kw.update(clause)
        return st.Select(fields=fields, sources=sources, **kw)

    def fields(self, *items):
        return tuple(items)

    def wildcard_field(self):
        return st.SelectField(st.Wildcard())

    def expr_field(self, expr, alias=None):
        return st.SelectField(expr, None if alias is None else _name(alias))

    def sources(self, *items):
        return tuple(items)

    def from_sources(self, sources):
        return {"sources": sources}

    @staticmethod
    def _last(token, **kw):
        if isinstance(token, Token) and token.type == "REGEX":
            return st.Source(regex=_regex(token), **kw)
        return st.Source(name=_name(token), **kw)

    def source_regex(self, token):
        return self._last(token)

    def source_1(self, name):
        return self._last(name)

    def source_2(self, rp, name):
        return self._last(name, retention=_name(rp))

    def source_3(self, db, rp, name):
        return self._last(name, database=_name(db), retention=_name(rp))

    def source_db(self, db, name):
        return self._last(name, database=_name(db))

    def where(self, expr):
        return {"condition": expr}

    def group_by(self, *dims):
        out = {"group_tags": (), "group_tag_regexes": ()}
        for dim in dims:
            kind, value = dim
            if kind == "time":
                if "interval" in out:
                    raise ParseError("multiple time dimensions not allowed")
                out["interval"], out["interval_offset"] = value
            elif kind == "tag":
                out["group_tags"] += (value,)
            elif kind == "regex":
                out["group_tag_regexes"] += (value,)
            else:
                out["all_tags"] = True
        return out

    def time_dimension(self, interval, offset=None):
        # A zero or negative interval parses, as in InfluxDB: the statement fails when run.
        return ("time", (interval, 0 if offset is None else offset))

    def interval_arg(self, token):
        return duration_ns(token)

    def negative_interval(self, token):
        return -duration_ns(token)

    def offset_arg(self, token):
        return duration_ns(token)

    def negative_offset(self, token):
        return -duration_ns(token)

    def now_offset(self):
        raise ParseError("GROUP BY time(..., now()) is not supported; give the offset as a duration")

    def tag_dimension(self, name):
        return ("tag", _name(name))

    def all_dimensions(self):
        return ("all", None)

    def regex_dimension(self, token):
        return ("regex", _regex(token))

    def fill(self, value):
        return {"fill": value}

    def fill_arg(self, token):
        text = str(token)
        if token.type in ("NUMBER", "INTEGER"):
            return st.Fill("number", float(text) if "." in text or "e" in text.lower() else int(text))
        option = text.lower()
        if option in ("null", "none", "previous", "linear"):
            return st.Fill(option)
        raise ParseError(f"fill() only takes null, none, previous, linear or a number, got {text}")

    def negative_fill(self, token):
        text = str(token)
        return st.Fill("number", -(float(text) if "." in text or "e" in text.lower() else int(text)))

    def order_by(self, name, direction=None):
        if _name(name).lower() != "time":
            raise ParseError("only ORDER BY time supported at this time")
        return {"descending": direction is not None and str(direction).upper() == "DESC"}

    def order_bare(self, direction=None):
        return {"descending": direction is not None and str(direction).upper() == "DESC"}

    def tz(self, token):
        name = _unescape(str(token)[1:-1], _STRING_ESCAPES)
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ParseError(f"unable to find time zone {name}") from None
        return {"tz": name}

    def limit(self, n):
        return {"limit": _int(n)}

    def offset(self, n):
        return {"offset": _int(n)}

    def slimit(self, n):
        return {"slimit": _int(n)}

    def soffset(self, n):
        return {"soffset": _int(n)}

    # -- expressions ---------------------------------------------------------
    def or_op(self, lhs, rhs):
        return st.Binary("or", lhs, rhs)

    def and_op(self, lhs, rhs):
        return st.Binary("and", lhs, rhs)

    def compare(self, lhs, op, rhs):
        op = "!=" if str(op) == "<>" else str(op)
        return st.Binary(op, lhs, rhs)

    def match(self, lhs, op, regex):
        return st.Binary(str(op), lhs, st.RegexRef(_regex(regex)))

    def binary(self, lhs, op, rhs):
        return st.Binary(str(op), lhs, rhs)

    def negate(self, value):
        if isinstance(value, st.Literal) and isinstance(value.value, (int, float)) \
                and not isinstance(value.value, bool):
            return st.Literal(-value.value)
        if isinstance(value, st.Duration):
            return st.Duration(-value.ns)
        return st.Binary("*", st.Literal(-1), value)

    def varref(self, name):
        return st.VarRef(_name(name))

    def varref_cast(self, name, _type):
        return st.VarRef(_name(name))

    def regex_ref(self, token):
        return st.RegexRef(_regex(token))

    def number(self, token):
        return st.Literal(float(str(token)))

    def integer(self, token):
        return st.Literal(int(str(token)))

    def duration(self, token):
        return st.Duration(duration_ns(token))

    def string(self, token):
        return st.Literal(_unescape(str(token)[1:-1], _STRING_ESCAPES))

    def true(self, _token):
        return st.Literal(True)

    def false(self, _token):
        return st.Literal(False)

    def call(self, name, *args):
        return st.Call(str(name).lower(), tuple(a for a in args if a is not None))

    def wildcard_arg(self):
        return st.Wildcard()

    # -- SHOW ------------------------------------------------------------------
    def on(self, name):
        return {"database": _name(name)}

    def show_databases(self):
        return st.ShowDatabases()

    @staticmethod
    def _merge(clauses) -> dict:
        kw = {}
        for clause in clauses:
            if clause is not None:
                kw.update(clause)
        return kw

    def show_measurements(self, *clauses):
        return st.ShowMeasurements(**self._merge(clauses))

    def with_measurement(self, op, value):
        if str(op) in ("=~", "!~"):
            return {"match": (str(op), _regex(value))}
        if str(op) not in ("=", "!=", "<>"):
            raise ParseError(f"found {op}, expected =, !=, =~ or !~ after WITH MEASUREMENT")
        return {"match": ("!=" if str(op) == "<>" else str(op), _name(value))}

    def show_field_keys(self, *clauses):
        return st.ShowFieldKeys(**self._merge(clauses))

    def show_tag_keys(self, *clauses):
        return st.ShowTagKeys(**self._merge(clauses))

    def show_tag_values(self, *clauses):
        return st.ShowTagValues(**self._merge(clauses))

    def key_equal(self, op, name):
        if str(op) not in ("=", "!=", "<>"):
            raise ParseError(f"found {op}, expected =, !=, =~, !~ or IN after WITH KEY")
        return {"key": ("!=" if str(op) == "<>" else str(op), (_name(name),))}

    def key_regex(self, op, regex):
        return {"key": (str(op), _regex(regex))}

    def key_in(self, *names):
        return {"key": ("in", tuple(_name(n) for n in names))}

    def show_series(self, *clauses):
        return st.ShowSeries(**self._merge(clauses))

    def show_retention_policies(self, *clauses):
        return st.ShowRetentionPolicies(**self._merge(clauses))


_building = threading.Lock()


def prepare() -> None:
    """Build the parser now. lark computes its LALR tables in about a
    second, which the first InfluxQL query after the bridge starts (a
    dashboard's first panel) otherwise waits for: the bridge calls this in
    a thread of its pool as it starts."""
    _parser()


def _parser() -> Lark:
    with _building:  # a query arriving while it is built waits for it, never builds it twice
        return _build()


@functools.cache
def _build() -> Lark:
    with open(GRAMMAR, encoding="utf-8") as f:
        return Lark(f.read(), parser="lalr", lexer="contextual", maybe_placeholders=True)


def _describe(exc: UnexpectedInput, text: str) -> str:
    where = f"at line {exc.line}, char {exc.column}" if getattr(exc, "line", -1) not in (-1, None) else ""
    if isinstance(exc, UnexpectedEOF):
        return f"found EOF, expected {_expected(exc.expected)}".strip()
    if isinstance(exc, UnexpectedCharacters):
        return f"found {text[exc.pos_in_stream:exc.pos_in_stream + 1]!r} {where}"
    token = getattr(exc, "token", None)
    found = "EOF" if token is None or token.type == "$END" else str(token)
    expected = _expected(getattr(exc, "expected", ()) or ())
    return f"found {found}, expected {expected} {where}" if expected else f"found {found} {where}"


def _expected(names) -> str:
    words = sorted({n.strip("_").replace("_", " ") for n in names if not n.startswith("__ANON")})
    return ", ".join(words[:8])


def parse(text: str) -> list:
    """The statements of ``text``; :class:`ParseError` if it is not in the subset."""
    if len(text) > MAX_QUERY_LENGTH:
        raise ParseError(f"query longer than {MAX_QUERY_LENGTH} characters")
    try:
        tree = _parser().parse(text)
        return _Build().transform(tree)
    except VisitError as exc:
        inner = exc.orig_exc
        if isinstance(inner, ParseError):
            raise inner from None
        raise ParseError(str(inner)) from None
    except UnexpectedInput as exc:
        raise ParseError(" ".join(_describe(exc, text).split())) from None
    except LarkError as exc:
        raise ParseError(" ".join(str(exc).split())[:200]) from None
    except RecursionError:
        raise ParseError("query nested too deeply (too many conditions or operators in a row)") from None
