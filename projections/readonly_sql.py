"""Read-only SQL: which statements the ``sql`` command and the query endpoint run.

The statement is parsed by the engine that will run it: ClickHouse's ``parseQueryToJSON``
returns its own syntax tree (and refuses more than one statement), and that tree is walked
against allow-lists. Anything not named here is refused: statement kinds, tree nodes, table
functions, functions, system tables, output formats. ``SETTINGS`` and ``INTO OUTFILE`` are
refused outright. ``DESCRIBE`` and ``EXISTS`` (which the JSON form does not cover) are accepted
only in the exact shape ClickHouse's own single-line formatting gives them, on a plain name.

The engine runs every accepted statement with ``readonly = 1`` and the limits below (a second
wall: even a statement the check let through cannot write or change a setting).
"""

import hashlib
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from projections.migrations import PARAMETERIZED_VIEWS
from schemas.errors import ProjectionQueryError, QueryRefusedError

Rows = Sequence[Sequence[Any]]


def _words(*lines: str, sep: str | None = None) -> frozenset[str]:
    return frozenset(word.strip() for line in lines for word in line.split(sep) if word.strip())


Run = Callable[[str], Rows]
"""Runs one statement of the guard's own (read-only, limited) and returns its rows."""


@dataclass(frozen=True, slots=True)
class QueryLimits:
    """What one read-only query may use (``max_execution_time``, ``max_memory_usage``) and
    give back (``max_result_rows``, ``max_result_bytes``: the engine's memory limit does not
    count the result, which the process holds whole, as Python rows or formatted bytes)."""

    max_seconds: float = 60.0
    max_memory_bytes: int = 2 << 30
    max_result_rows: int = 1_000_000
    max_result_bytes: int = 256 << 20

    def settings(self) -> dict[str, Any]:
        """The engine settings of a read-only query: the limits, then ``readonly = 1``."""
        return {
            "max_execution_time": self.max_seconds,
            "max_memory_usage": self.max_memory_bytes,
            "max_result_rows": self.max_result_rows,
            "max_result_bytes": self.max_result_bytes,
            "readonly": 1,
        }


@dataclass(frozen=True, slots=True)
class CheckedStatement:
    """A statement that passed the check: its text (run as given) and its FORMAT, if any."""

    sql: str
    output_format: str | None


STATEMENTS = "SELECT, WITH, UNION, SHOW TABLES/DATABASES/COLUMNS, DESCRIBE, EXISTS, EXPLAIN"
OUTPUT_FORMATS = frozenset(
    name.lower()
    for name in _words(
        "TabSeparated TabSeparatedWithNames TabSeparatedWithNamesAndTypes TabSeparatedRaw ",
        "TabSeparatedRawWithNames TabSeparatedRawWithNamesAndTypes TSV TSVWithNames ",
        "TSVWithNamesAndTypes TSVRaw TSVRawWithNames TSVRawWithNamesAndTypes CSV ",
        "CSVWithNames CSVWithNamesAndTypes JSON JSONStrings JSONCompact JSONCompactStrings ",
        "JSONColumns JSONCompactColumns JSONEachRow JSONStringsEachRow JSONCompactEachRow ",
        "JSONCompactEachRowWithNames JSONCompactEachRowWithNamesAndTypes ",
        "JSONCompactStringsEachRow JSONObjectEachRow JSONLines NDJSON Native RowBinary ",
        "RowBinaryWithNames RowBinaryWithNamesAndTypes Parquet Arrow ArrowStream ORC Avro ",
        "Values Vertical Markdown Pretty PrettyCompact PrettyCompactMonoBlock PrettySpace ",
        "PrettyNoEscapes PrettyCompactNoEscapes PrettySpaceNoEscapes PrettyMonoBlock XML Null",
    )
)
"""Output formats (case-insensitive). Not the ones that read schema or template files."""

TABLE_FUNCTIONS = _words(
    "numbers numbers_mt zeros zeros_mt generateRandom generateSeries generate_series ",
    "values null view primes",
)
"""Table functions that make rows from their arguments alone (no file, network, process)."""

SYSTEM_TABLES = _words(
    "one numbers numbers_mt zeros zeros_mt databases tables columns functions ",
    "table_functions aggregate_function_combinators data_type_families formats settings ",
    "time_zones collations table_engines",
)
"""``system`` tables a BI tool reads to find its way; the others (users, processes, query
logs, disks, ...) describe more than the projections."""

FUNCTION_CATEGORIES = _words(
    "Aggregate Functions, Arithmetic, Arrays, Bit, Bitmap, Comparison, Conditional, ",
    "Dates and Times, Distance, Encoding, Financial, Geo, Geo Polygon, Hash, IP Address, ",
    "JSON, Logical, Map, Mathematical, Null, NumericIndexedVector, Random Number, ",
    "Rounding, String, String Replacement, String Search, String Splitting, Time Window, ",
    "Tuple, Type Conversion, URL, UUID",
    sep=",",
)
"""Categories (``system.functions.categories``) of functions that compute on their arguments.
Not: Other (``file``, ``sleep``, ``getSetting``, ``hostName``...), AI (network), Dictionary,
Introspection, Internal, Machine Learning, Encryption, Time Series."""

FUNCTIONS = _words(
    "lambda caseWithExpression version currentDatabase timezone timeZone toTypeName ",
    "toColumnTypeName identity materialize ignore transform bar finalizeAggregation ",
    "initializeAggregation runningDifference neighbor ",
    "runningDifferenceStartingWithFirstValue isConstant byteSize visibleWidth blockSize ",
    "rowNumberInBlock rowNumberInAllBlocks throwIf countDigits formatReadableSize ",
    "formatReadableDecimalSize formatReadableQuantity formatReadableTimeDelta ",
    "parseTimeDelta parseReadableSize indexHint parseReadableSizeOrNull ",
    "parseReadableSizeOrZero defaultValueOfArgumentType defaultValueOfTypeName ",
    "getSizeOfEnumType isDecimalOverflow formatQuery formatQueryOrNull ",
    "formatQuerySingleLine formatQuerySingleLineOrNull parseQueryToJSON normalizeQuery ",
    "normalizedQueryHash",
)
"""Functions allowed by name beyond the categories: syntax (``lambda``, ``CASE x``) and the
harmless ones BI tools and this guard call."""

FORMAT_ARGUMENT = frozenset(("formatRow", "formatRowNoNewline"))
"""Functions whose first argument names an output format (checked like ``FORMAT``)."""

EXPLAIN_KINDS = _words(
    "EXPLAIN, EXPLAIN AST, EXPLAIN SYNTAX, EXPLAIN QUERY TREE, EXPLAIN PLAN, ",
    "EXPLAIN PIPELINE, EXPLAIN ESTIMATE",
    sep=",",
)
EXPLAIN_OPTIONS = _words(
    "header description indexes actions json optimize sorting graph compact ",
    "keep_logical_steps run_passes dump_passes passes dump_ast",
)

NODES = _words(
    "SelectWithUnionQuery SelectQuery SelectIntersectExceptQuery ExpressionList Literal ",
    "Function Identifier TableIdentifier Asterisk QualifiedAsterisk ColumnsRegexpMatcher ",
    "ColumnsListMatcher QualifiedColumnsRegexpMatcher QualifiedColumnsListMatcher ",
    "ColumnsTransformerList ColumnsApplyTransformer ColumnsExceptTransformer ",
    "ColumnsReplaceTransformer ColumnsReplaceTransformer::Replacement ",
    "TablesInSelectQuery TablesInSelectQueryElement TableExpression TableJoin ArrayJoin ",
    "Subquery WithElement OrderByElement WindowDefinition WindowListElement SampleRatio ",
    "QueryParameter InterpolateElement ExplainQuery ShowTablesQuery ShowColumnsQuery ",
    "ShowIndexesQuery SetQuery",
)
"""Syntax-tree nodes a read-only statement may contain (``SetQuery``: EXPLAIN options only)."""

ROOTS = frozenset(("SelectWithUnionQuery", "ExplainQuery"))
SHOW_TABLES_KEYS = _words(
    "type full databases dictionaries temporary like not_like case_insensitive_like from ",
    "limit_length where_expression format_ast",
)
_OUTPUT_CLAUSE_FLAGS = ("is_outfile_append", "is_outfile_truncate", "is_into_outfile_with_stdout")
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_DESCRIBE_OR_EXISTS = re.compile(
    rf"(?:DESCRIBE TABLE|EXISTS (?:TEMPORARY )?(?:TABLE|VIEW|DICTIONARY|DATABASE)) "
    rf"(?P<name>{_NAME}(?:\.{_NAME})?)(?: FORMAT (?P<format>{_NAME}))?"
)
_NO_JSON_FORM = 36  # BAD_ARGUMENTS: parseQueryToJSON has no JSON form for this statement
_UNKNOWN_FUNCTION = 46


_CATALOGUES = frozenset({"system", "information_schema"})
"""Databases whose names a parameterized view call may not carry."""


def refuse(what: str, statement: bool = False) -> QueryRefusedError:
    """The error for ``what``; a refused statement kind also says which kinds are accepted."""
    accepted = f" (it accepts {STATEMENTS})" if statement else ""
    return QueryRefusedError(f"{what} is not allowed in read-only SQL{accepted}")


def quoted(text: str) -> str:
    """``text`` as a ClickHouse string literal (backslash and quote are the only escapes)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


ACCEPTED_KEPT = 256
"""Accepted statements whose verdict a guard keeps (the latest)."""
ACCEPTED_KEPT_CHARS = 16_384
"""Longer statements are checked every time (the kept verdicts stay small)."""


class ReadOnlyGuard:
    """Checks statements against the allow-lists, parsed by the engine behind ``run``.

    One per engine: it keeps that engine's function catalogue after the first check, and the
    verdicts of the latest statements it accepted (:data:`ACCEPTED_KEPT`, each at most
    :data:`ACCEPTED_KEPT_CHARS` long): the verdict depends only on the statement's text and on
    that catalogue, and a dashboard or a poller sends the same statement again and again (each
    check is a round trip to the engine's parser). A refused statement is checked every time.
    """

    def __init__(self) -> None:
        self._functions: _FunctionCatalogue | None = None
        self._accepted: OrderedDict[str, CheckedStatement] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, sql: str, run: Run) -> CheckedStatement:
        """The statement, checked; :class:`QueryRefusedError` names what is refused."""
        with self._lock:
            known = self._accepted.get(sql)
            if known is not None:
                self._accepted.move_to_end(sql)
                return known
        checked = self._check(sql, run)
        if len(sql) <= ACCEPTED_KEPT_CHARS:
            with self._lock:
                self._accepted[sql] = checked
                while len(self._accepted) > ACCEPTED_KEPT:
                    self._accepted.popitem(last=False)
        return checked

    def _check(self, sql: str, run: Run) -> CheckedStatement:
        try:
            digest = hashlib.sha256(sql.encode("utf-8")).hexdigest()
        except UnicodeEncodeError:
            raise QueryRefusedError("the statement is not valid UTF-8") from None
        if not sql.strip():
            raise QueryRefusedError("no statement")
        tree = self._parse(sql, digest, run)
        if tree is None:
            return CheckedStatement(sql, self._describe_or_exists(sql, digest, run))
        walk = _Walk(self._catalogue(run))
        try:
            return CheckedStatement(sql, walk.statement(tree))
        except RecursionError:
            raise _too_deep() from None

    def _parse(self, sql: str, digest: str, run: Run) -> dict[str, Any] | None:
        """The engine's syntax tree of ``sql``; ``None`` when it has no JSON form."""
        try:
            text = _answer(run, f"parseQueryToJSON({quoted(sql)})", sql, digest)
        except QueryRefusedError:
            raise
        except Exception as error:
            message = _first_line(error)
            if _error_code(error) == _NO_JSON_FORM:
                return None
            if "Multi-statements are not allowed" in message:
                raise refuse("more than one statement") from error
            if _error_code(error) == _UNKNOWN_FUNCTION and "parseQueryToJSON" in message:
                raise ProjectionQueryError(
                    "read-only SQL needs ClickHouse 26.8 or later (parseQueryToJSON)"
                ) from error
            raise ProjectionQueryError(message.split(": In scope SELECT")[0]) from error
        try:
            tree: dict[str, Any] = orjson.loads(text)
        except orjson.JSONDecodeError:  # deeper than orjson reads (1024 levels)
            raise _too_deep() from None
        return tree

    def _describe_or_exists(self, sql: str, digest: str, run: Run) -> str | None:
        canonical = _answer(run, f"formatQuerySingleLine({quoted(sql)})", sql, digest)
        shape = _DESCRIBE_OR_EXISTS.fullmatch(canonical.strip())
        if shape is None:
            raise refuse(f"{canonical.split(' ', 1)[0]} in this form", statement=True)
        _check_table(shape["name"].split("."))
        return output_format(shape["format"])

    def _catalogue(self, run: Run) -> "_FunctionCatalogue":
        if self._functions is None:
            self._functions = _FunctionCatalogue(
                run(
                    "SELECT name, alias_to, categories, is_aggregate, case_insensitive "
                    "FROM system.functions"
                ),
                [
                    str(row[0])
                    for row in run("SELECT name FROM system.aggregate_function_combinators")
                ],
            )
        return self._functions


class _FunctionCatalogue:
    """Which function names the allow-lists admit, from the engine's ``system.functions``."""

    def __init__(self, functions: Rows, combinators: list[str]) -> None:
        self._entries: dict[str, tuple[str, str, bool]] = {}
        self._folded: dict[str, tuple[str, str, bool]] = {}
        for name, alias_to, categories, is_aggregate, case_insensitive in functions:
            entry = (str(alias_to), str(categories), bool(int(is_aggregate)))
            self._entries[str(name)] = entry
            if int(case_insensitive):
                self._folded[str(name).lower()] = entry
        self._combinators = sorted(combinators, key=len, reverse=True)

    def _entry(self, name: str) -> tuple[str, str, bool] | None:
        return self._entries.get(name) or self._folded.get(name.lower())

    def allows(self, name: str, aggregate_only: bool = False) -> bool:
        if name in FUNCTIONS and not aggregate_only:
            return True
        entry = self._entry(name)
        if entry is not None and entry[0]:  # an alias: judged as what it stands for
            entry = self._entry(entry[0]) or entry
        if entry is not None:
            _alias, categories, is_aggregate = entry
            if aggregate_only and not is_aggregate:
                return False
            return any(c.strip() in FUNCTION_CATEGORIES for c in categories.split(","))
        for combinator in self._combinators:  # sumIf, uniqMerge, avgOrNullIf...
            base = name.removesuffix(combinator)
            if base != name and base and self.allows(base, aggregate_only=True):
                return True
        return False


class _Walk:
    """One pass over a syntax tree; raises :class:`QueryRefusedError` at the first refusal."""

    def __init__(self, functions: _FunctionCatalogue) -> None:
        self._functions = functions

    def statement(self, tree: dict[str, Any]) -> str | None:
        """Check a whole statement; return its FORMAT (``None`` without one)."""
        kind = str(tree.get("type"))
        if kind in ("ShowTablesQuery", "ShowColumnsQuery", "ShowIndexesQuery"):
            self._show(tree)
        elif kind not in ROOTS:
            raise refuse(_statement_name(kind), statement=True)
        self._output_clauses(tree)
        self._node(tree, None)
        format_ast = tree.get("format_ast")
        return output_format(str(format_ast.get("name"))) if isinstance(format_ast, dict) else None

    def _show(self, tree: dict[str, Any]) -> None:
        if tree["type"] == "ShowTablesQuery":
            extra = set(tree) - SHOW_TABLES_KEYS - set(_OUTPUT_CLAUSE_FLAGS) - {"out_file"}
            if extra:
                raise refuse(f"SHOW {sorted(extra)[0].upper()}")
        elif tree["type"] == "ShowColumnsQuery" or tree["type"] == "ShowIndexesQuery":
            database = str(tree.get("database") or "")
            _check_table([database, str(tree.get("table"))] if database else [str(tree["table"])])

    def _output_clauses(self, tree: dict[str, Any]) -> None:
        if "out_file" in tree or tree.get("is_into_outfile_with_stdout"):
            raise refuse("INTO OUTFILE")
        if "compression" in tree:
            raise refuse("COMPRESSION")
        if "settings_ast" in tree or (tree.get("type") != "ExplainQuery" and "settings" in tree):
            raise refuse("a SETTINGS clause")

    def _node(self, node: dict[str, Any], parent_key: str | None) -> None:
        kind = str(node.get("type"))
        if kind not in NODES or kind == "SetQuery":  # EXPLAIN's options are read in _explain
            raise refuse("a SETTINGS clause" if kind == "SetQuery" else _statement_name(kind))
        if kind == "Literal":
            return  # a value: nothing inside is syntax
        if kind == "ExplainQuery":
            self._explain(node)
            return
        if kind in ("SelectWithUnionQuery", "SelectQuery", "SelectIntersectExceptQuery"):
            self._output_clauses(node)
        elif kind == "Function":
            self._function(node, table=parent_key == "table_function")
        elif kind == "ColumnsApplyTransformer":
            self._named_function(str(node.get("func_name")))
        elif kind == "QueryParameter" and str(node.get("param_type")) == "Identifier":
            raise refuse("an Identifier parameter")
        elif kind == "TableIdentifier":
            _check_table(_parts(node))
        elif kind == "Identifier" and len(_parts(node)) > 1:
            _check_table(_parts(node)[:2])  # ``x IN system.users``, ``system.users.name``
        format_ast = node.get("format_ast")
        if format_ast is not None:
            output_format(str(format_ast.get("name")) if isinstance(format_ast, dict) else "")
        for key, value in node.items():
            if key != "format_ast":
                for child in _nodes(value):
                    self._node(child, key)

    def _explain(self, node: dict[str, Any]) -> None:
        if str(node.get("kind")) not in EXPLAIN_KINDS or "table_function" in node:
            raise refuse(str(node.get("kind")))
        settings = node.get("settings")
        for change in settings.get("changes", []) if isinstance(settings, dict) else []:
            if str(change.get("name")) not in EXPLAIN_OPTIONS:
                raise refuse(f"the EXPLAIN option {change.get('name')!r}")
        self._output_clauses(node)
        inner = node.get("query")
        if not isinstance(inner, dict):
            raise refuse("EXPLAIN without a query")
        self.statement(inner)

    def _function(self, node: dict[str, Any], table: bool) -> None:
        name = str(node.get("name"))
        if table:
            database, _, view = name.rpartition(".")  # BI tools name the database too
            if view in PARAMETERIZED_VIEWS.values() and database.lower() not in _CATALOGUES:
                return  # a view of the projections; its arguments are walked as any node's
            if name not in TABLE_FUNCTIONS:
                raise refuse(f"the table function {name}()")
            return
        self._named_function(name)
        if name in FORMAT_ARGUMENT:
            arguments = list(_nodes(node.get("arguments")))
            first = arguments[0].get("children", [None])[0] if arguments else None
            value = first.get("value", {}).get("value") if isinstance(first, dict) else None
            output_format(str(value) if first and first.get("type") == "Literal" else "")

    def _named_function(self, name: str) -> None:
        if not self._functions.allows(name):
            raise refuse(f"the function {name}()")


def _answer(run: Run, expression: str, sql: str, digest: str) -> str:
    """``expression`` (on ``sql``) as the engine computes it, checked to be this query's own
    answer: chDB hands what a failed query had written to the next query on its handle, so a
    reader's failing statement could otherwise stand in for the tree of the next one. The
    answer carries ``sql``'s digest and a fresh nonce; a stale answer is skipped once (it is
    read by that query), and another mismatch refuses the statement."""
    for attempt in range(2):
        nonce = secrets.token_hex(16)
        try:
            rows = run(f"SELECT {expression}, lower(hex(SHA256({quoted(sql)}))), '{nonce}'")
        except QueryRefusedError:
            raise
        except Exception as error:
            if attempt == 0 and _error_code(error) is None:
                continue  # not the engine's error: a stale answer that did not decode
            raise
        row = rows[0] if len(rows) == 1 else ()
        if len(row) == 3 and row[2] == nonce:
            if row[1] != digest:  # the engine parsed other text than the one given
                raise QueryRefusedError("the statement did not reach the parser intact")
            return str(row[0])
    raise QueryRefusedError("the engine's answer to the check was not its own")


def _nodes(value: Any) -> Iterator[dict[str, Any]]:
    """The syntax-tree nodes in a field's value (one node, or a list of them)."""
    if isinstance(value, dict) and "type" in value:
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _nodes(item)
    elif isinstance(value, list):
        for item in value:
            yield from _nodes(item)


def _parts(node: dict[str, Any]) -> list[str]:
    parts = node.get("name_parts")
    return [str(p) for p in parts] if isinstance(parts, list) else [str(node.get("name"))]


def _check_table(parts: list[str]) -> None:
    """A ``[database, table]`` (or ``[table]``) reference: nothing of ``system`` but the
    allow-listed tables."""
    if len(parts) >= 2 and parts[0].lower() == "system" and parts[1] not in SYSTEM_TABLES:
        raise refuse(f"the table system.{parts[1]}")


def output_format(name: str | None) -> str | None:
    """``name`` if it is an allowed output format (``None`` stays ``None``)."""
    if name is None:
        return None
    if name.lower() not in OUTPUT_FORMATS:
        raise refuse(f"the format {name!r}")
    return name


def _too_deep() -> QueryRefusedError:
    """The engine parses up to 1000 levels; its tree's JSON (two levels for each) is deeper
    than orjson reads or than Python's recursion the walk takes."""
    return QueryRefusedError("the statement is nested too deeply to be checked")


def _statement_name(kind: str) -> str:
    """``DropQuery`` -> ``DROP``, ``KillQueryQuery`` -> ``KILL QUERY``; other nodes as they are."""
    if not kind.endswith("Query"):
        return kind
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", kind.removesuffix("Query")).upper()


def _error_code(error: Exception) -> int | None:
    match = re.search(r"Code:\s*(\d+)", str(error))
    return int(match.group(1)) if match else None


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
