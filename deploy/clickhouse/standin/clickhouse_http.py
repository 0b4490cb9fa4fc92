#!/usr/bin/env python3
"""A test-only stand-in for ClickHouse's HTTP interface, in front of chdb.

    clickhouse_http.py --listen 127.0.0.1:0 --path DIR [--schema schema.sql]
                       [--user NAME --password SECRET]

Opens (or creates) a chdb database in DIR, applies the schema file if given
(split and prepared as report.py does, with cluster.statements and
cluster.code; schema.sql says IF NOT EXISTS throughout, so applying it again
is harmless), binds, prints exactly one line `listening http://HOST:PORT` to
stdout and serves until SIGTERM or SIGINT, then closes chdb and exits 0.
One line per request goes to stderr. Data in DIR outlives the process (a
SIGKILL too: each insert is on disk when it is answered).

Everything behind the HTTP layer is the real ClickHouse engine: chdb
(ClickHouse in-process) parses the SQL and the Native input, stores the
rows in its MergeTree tables under DIR, fires the materialized views and
runs the queries; the answers and the errors are chdb's. This file only
speaks HTTP, and only for the project's tests, because no ClickHouse server
can be installed on the project's machines. It is not a server to deploy.

Implemented: what the OpenTelemetry Collector's clickhouse exporter
(contrib v0.161.0) and its driver, clickhouse-go v2.47.0 over HTTP with
ch-go v0.73.0, send and expect (files below are in clickhouse-go unless
named otherwise), and plain queries:

* POST / with the SQL in the `query` URL parameter, in the body, or in both
  (then the body follows the parameter's text, after a newline); GET / with
  `query`; GET / and GET /ping without one answer "Ok.". The driver posts
  every request to / with its parameters in the URL (conn_http.go:171-203,
  614-654).
* INSERT ... FORMAT <fmt> in `query` with the data in the body: chdb streams
  the body into the INSERT in that format (Session.send_insert), so the
  materialized views fire as on a server. The driver's batch sends
  `INSERT INTO "db"."table" (cols) FORMAT Native` (batch.go:14-37; the
  exporter's column lists are internal/sqltemplates/metrics_*_insert.sql)
  with Content-Type application/octet-stream and one Native block encoded
  at revision 0, i.e. without block info or serialization bytes
  (conn_http.go:221, 406-421; lib/proto/block.go:109-169), in a chunked
  body (conn_http_batch.go:222-281, an io.Pipe). That block is what chdb's
  Native input reads as it is.
* Before each batch the driver runs `DESCRIBE TABLE "db"."table"`, scans 7
  Strings a row and skips MATERIALIZED and ALIAS columns
  (conn_http_batch.go:16-74): chdb's DESCRIBE has those 7 columns.
* Native answers as the driver reads them. Each new connection first runs
  `SELECT displayName(), version(), revision(), timezone()` and scans
  String, String, UInt32, String (conn_http.go:320-356); each request
  carries `default_format=Native` and `client_protocol_version=54460`
  (conn_http.go:201-202; client_info.go:18; lib/proto/const.go:23). The
  driver decodes the handshake at revision 54460, later answers at the
  revision() it returned (conn_http.go:220, 234; chdb's is 54515), and at
  any revision > 0 expects block info before each block and, from 54454
  (lib/proto/const.go:18), a has-custom-serialization byte after each
  column's type (lib/proto/block.go:171-246, 262-281). chdb refuses the
  client_protocol_version setting and writes Native at revision 0, so the
  stand-in takes the parameter and re-frames chdb's answer: block info
  01 00 02 ffffffff 00 (is_overflows false, bucket_num -1, as
  lib/proto/block.go:254-260 writes it) before each block when the version
  is > 0, and a 0 byte (no custom serialization) after each column's type
  when it is >= 54454. Finding the columns' ends takes their Native layout,
  known here for numbers, Bool, dates and times, String, FixedString, UUID,
  IPv4/6, Enum, Decimal, Nothing, Array, Nullable, Tuple, Map,
  LowCardinality and SimpleAggregateFunction. Without the parameter,
  Native goes out as chdb writes it. The driver's Ping, `SELECT 1`, is an
  ordinary query (conn_http.go:727-741); the exporter does not ping.
* ClickHouse's block compression, the exporter's default `compress: lz4`
  (exporter config.go:187-191; clickhouse_options.go:215-234): with
  `decompress=1` the body is a sequence of compressed frames, and with
  `compress=1` so is the answer, error text included. The driver sets both
  on inserts (conn_http_batch.go:239-245) and `compress=1` on queries
  (conn_http_query.go:42-48), and reads error bodies through the same
  decompression (conn_http.go:593-612). A frame: a 16-byte checksum
  (CityHash128 v1.0.2 of the rest of the frame), a method byte, the size
  of the frame from the method byte on and the uncompressed size (UInt32
  little-endian each), then the data (ch-go compress/compress.go:24-58,
  reader.go:104-186, writer.go:30-72). In: LZ4 (0x82) and none (0x02),
  checksum checked (CHECKSUM_DOESNT_MATCH otherwise). Out: LZ4 frames of
  at most 1 MiB of data.
* `param_<name>=value` for the query's `{name:Type}` parameters
  (conn_http.go:648-650), given to chdb's params.
* `database=` (conn_http.go:178-180): the query runs after `USE` of it, of
  `default` without it. (With `create_schema: false` the exporter sends
  none and names the database in its INSERTs and DESCRIBEs.)
* `default_format=` (TabSeparated without it); a FORMAT clause wins.
* Any other URL parameter is a ClickHouse setting for that query, as on a
  server: SET in the chdb session before it, SET ... = DEFAULT after it,
  and chdb refuses what it does not know (UNKNOWN_SETTING). The driver
  puts its settings in the URL (conn_http.go:193-199, 638-647): from the
  exporter, `async_insert` (exporter config.go:182-185) and
  `max_execution_time`, the context's deadline + 5 s (context.go:233-241).
* Credentials, with --user and --password: every request but /ping must
  carry that user and password, by HTTP Basic auth (what the driver sends
  over plain http, conn_http.go:131-137: the configured user, `default`
  when none is, clickhouse_options.go:403-405), by the X-ClickHouse-User
  and X-ClickHouse-Key headers (what it sends over https,
  conn_http.go:122-130; what report.py sends), or by the `user` and
  `password` URL parameters; anything else is ClickHouse's
  AUTHENTICATION_FAILED (516, HTTP 403). Without --user there is no access
  control. Users, grants and quotas are not modelled.
* Accepted and ignored: `query_id`, `quota_key`, `buffer_size`,
  `wait_end_of_query` (answers are always whole before they are sent).
* Errors as ClickHouse answers them: the text `Code: N. DB::Exception: ...
  (NAME)` (chdb's own), header X-ClickHouse-Exception-Code: N, and the
  status ClickHouse gives the code (its
  src/Server/HTTP/exceptionCodeToHTTPStatus.cpp: 400 for parse and
  argument errors, 404 for unknown tables, functions, settings, ..., 501
  for NOT_IMPLEMENTED, 500 otherwise). The driver takes any status but 200
  as a failure (conn_http.go:706-725); the exporter returns it, and the
  collector's retry_on_failure retries the whole export.

Not implemented, answered with NOT_IMPLEMENTED (501) naming what: sessions
(`session_id`, `session_timeout`, `session_check`, `close_session`),
`role`, external tables (multipart/form-data), HTTP compression
(Content-Encoding: the driver's gzip, deflate, br), compressed frames of
other methods (ZSTD, the driver's `compress: zstd`), paths other than /
and /ping, client_protocol_version above 54460, and re-framing Native
answers with other column types (Dynamic, Variant, JSON, aggregate states,
...). Also absent: users and quotas, progress and summary headers,
query cancellation, read-only GET; queries run one at a time.

Needs, besides chdb, the PyPI packages clickhouse-cityhash (ClickHouse's
CityHash128 v1.0.2) and lz4 (LZ4 blocks), pinned in ../requirements.txt.
"""

import argparse
import base64
import pathlib
import re
import signal
import struct
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import lz4.block
from chdb import session as chdb_session
from clickhouse_cityhash.cityhash import CityHash128

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from cluster import code, statements  # noqa: E402  (deploy/clickhouse/cluster.py)

# The newest client_protocol_version whose Native framing this file writes:
# clickhouse-go v2.47.0's DBMS_TCP_PROTOCOL_VERSION.
MAX_PROTOCOL = 54460
CUSTOM_SERIALIZATION = 54454  # DBMS_MIN_REVISION_WITH_CUSTOM_SERIALIZATION
# BlockInfo: field 1 is_overflows = false, field 2 bucket_num = -1, end.
BLOCK_INFO = b"\x01\x00\x02\xff\xff\xff\xff\x00"

# URL parameters that are not settings.
IGNORED = {"user", "password", "query_id", "quota_key", "buffer_size", "wait_end_of_query"}
UNSUPPORTED = {"session_id", "session_timeout", "session_check", "close_session", "role"}
HANDLED = {"query", "database", "default_format", "compress", "decompress",
           "client_protocol_version"}


class ClickHouseError(Exception):
    """An error as ClickHouse reports it: code, name and message text."""

    def __init__(self, code, name, text):
        super().__init__(text)
        self.code, self.name, self.text = code, name, text

    @classmethod
    def of(cls, code, name, message):
        return cls(code, name, f"Code: {code}. DB::Exception: {message}. ({name})")

    @classmethod
    def from_chdb(cls, error):
        """chdb's exception text, which is ClickHouse's, from its 'Code: N.' on."""
        text = str(error)
        text = text[text.find("Code: "):] if "Code: " in text else text
        code = re.search(r"Code: (\d+)\.", text)
        name = re.search(r"\(([A-Z0-9_]+)\)(?: \(version [^)]*\))?\.?\s*$", text)
        return cls(int(code.group(1)) if code else 1001,
                   name.group(1) if name else "STD_EXCEPTION", text)

    def status(self):
        """The HTTP status ClickHouse gives this code (exceptionCodeToHTTPStatus.cpp)."""
        n = self.name
        if n == "REQUIRED_PASSWORD":
            return 401
        if n in {"UNKNOWN_USER", "WRONG_PASSWORD", "AUTHENTICATION_FAILED", "SET_NON_GRANTED_ROLE",
                 "ACCESS_DENIED"}:
            return 403
        if n.startswith("CANNOT_PARSE_") or n in {
                "BAD_ARGUMENTS", "CANNOT_COMPILE_REGEXP", "DUPLICATE_COLUMN", "ILLEGAL_COLUMN",
                "UNKNOWN_ELEMENT_IN_AST", "UNKNOWN_TYPE_OF_AST_NODE", "THERE_IS_NO_COLUMN",
                "TOO_DEEP_AST", "TOO_BIG_AST", "UNEXPECTED_AST_STRUCTURE", "SYNTAX_ERROR",
                "INCORRECT_DATA", "TYPE_MISMATCH", "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE"}:
            return 400
        if n in {"UNKNOWN_TABLE", "UNKNOWN_FUNCTION", "UNKNOWN_IDENTIFIER", "UNKNOWN_TYPE",
                 "UNKNOWN_STORAGE", "UNKNOWN_DATABASE", "UNKNOWN_SETTING",
                 "UNKNOWN_DIRECTION_OF_SORTING", "UNKNOWN_AGGREGATE_FUNCTION", "UNKNOWN_FORMAT",
                 "UNKNOWN_DATABASE_ENGINE", "UNKNOWN_TYPE_OF_QUERY", "UNKNOWN_ROLE"}:
            return 404
        return {"QUERY_IS_TOO_LARGE": 413, "NOT_IMPLEMENTED": 501, "SOCKET_TIMEOUT": 503,
                "CANNOT_OPEN_FILE": 503, "CANNOT_SCHEDULE_TASK": 503, "HTTP_LENGTH_REQUIRED": 411,
                "TIMEOUT_EXCEEDED": 408, "UNSUPPORTED_MEDIA_TYPE": 415}.get(n, 500)


def unsupported(what):
    return ClickHouseError.of(48, "NOT_IMPLEMENTED",
                              f"clickhouse_http stand-in: {what} is not supported")


# ClickHouse's compressed frames (ch-go compress/).

FRAME_HEADER = struct.Struct("<BII")  # method, size from the method byte on, data size
MAX_FRAME_DATA = 1 << 20


def checksum(frame):
    """CityHash128 (v1.0.2) of the frame from its method byte on: its two
    UInt64 halves little-endian, CityHash's first (low) half first (ch-go
    writer.go:67-69). The package's int has that first half on top."""
    h = CityHash128(frame)
    return struct.pack("<QQ", h >> 64, h & 0xFFFFFFFFFFFFFFFF)


def decompress(body):
    out, pos = bytearray(), 0
    while pos < len(body):
        if len(body) - pos < 16 + FRAME_HEADER.size:
            raise ClickHouseError.of(246, "CORRUPTED_DATA", "Truncated compressed frame header")
        method, size, data_size = FRAME_HEADER.unpack_from(body, pos + 16)
        frame = body[pos + 16:pos + 16 + size]
        if size < FRAME_HEADER.size or len(frame) != size:
            raise ClickHouseError.of(246, "CORRUPTED_DATA", f"Truncated frame ({size} B)")
        if checksum(frame) != body[pos:pos + 16]:
            raise ClickHouseError.of(
                40, "CHECKSUM_DOESNT_MATCH",
                f"Checksum doesn't match: corrupted data. Reference: {body[pos:pos + 16].hex()}. "
                f"Actual: {checksum(frame).hex()}. Size of compressed block: {size}")
        data = frame[FRAME_HEADER.size:]
        if method == 0x82:
            try:
                data = lz4.block.decompress(data, uncompressed_size=data_size)
            except lz4.block.LZ4BlockError as e:
                raise ClickHouseError.of(271, "CANNOT_DECOMPRESS", f"Cannot decompress LZ4: {e}")
        elif method != 0x02:
            raise unsupported(f"compression method 0x{method:02x} (only LZ4 0x82 and none 0x02)")
        if len(data) != data_size:
            raise ClickHouseError.of(271, "CANNOT_DECOMPRESS", "Decompressed size mismatch")
        out += data
        pos += 16 + size
    return bytes(out)


def compress(data):
    out = bytearray()
    for start in range(0, len(data), MAX_FRAME_DATA):
        chunk = data[start:start + MAX_FRAME_DATA]
        packed = lz4.block.compress(chunk, store_size=False)
        frame = FRAME_HEADER.pack(0x82, FRAME_HEADER.size + len(packed), len(chunk)) + packed
        out += checksum(frame) + frame
    return bytes(out)


# Native re-framing: chdb writes Native at revision 0; the driver reads it at
# its revision (lib/proto/block.go:171-246).

FIXED = {
    "UInt8": 1, "Int8": 1, "Bool": 1, "Enum8": 1, "Nothing": 1,
    "UInt16": 2, "Int16": 2, "Date": 2, "Enum16": 2, "BFloat16": 2,
    "UInt32": 4, "Int32": 4, "Float32": 4, "Date32": 4, "DateTime": 4, "IPv4": 4, "Decimal32": 4,
    "UInt64": 8, "Int64": 8, "Float64": 8, "DateTime64": 8, "Decimal64": 8,
    "UInt128": 16, "Int128": 16, "UUID": 16, "IPv6": 16, "Decimal128": 16,
    "UInt256": 32, "Int256": 32, "Decimal256": 32,
}


def split_type(t):
    """'Map(K, V)' -> ('Map', ['K', 'V']), minding quotes and nesting."""
    t = t.strip()
    if "(" not in t or not t.endswith(")"):
        return t, []
    name, inner = t[:t.index("(")], t[t.index("(") + 1:-1]
    args, depth, quote, start = [], 0, None, 0
    for i, c in enumerate(inner):
        if quote:
            quote = None if c == quote and inner[i - 1] != "\\" else quote
        elif c in "'`\"":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "," and depth == 0:
            args.append(inner[start:i].strip())
            start = i + 1
    return name, args + [inner[start:].strip()]


def element_type(arg):
    """A Tuple element's type, without its name ('x UInt8' -> 'UInt8')."""
    m = re.match(r"(`[^`]*`|[A-Za-z_]\w*)\s+(.+)$", arg, re.S)
    return m.group(2) if m and "(" not in m.group(1) else arg


class NativeReader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ClickHouseError.of(246, "CORRUPTED_DATA", "Native answer ends inside a block")
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def varint(self):
        value = shift = 0
        while True:
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    def u64(self):
        return struct.unpack("<Q", self.take(8))[0]

    def string(self):
        return self.take(self.varint())

    def skip_prefix(self, t):
        """The column's serialization state prefix (LowCardinality's key version)."""
        name, args = split_type(t)
        if name == "LowCardinality":
            self.take(8)
        elif name in ("Array", "Nullable"):
            self.skip_prefix(args[0])
        elif name == "SimpleAggregateFunction":
            self.skip_prefix(args[1])
        elif name in ("Tuple", "Map"):
            for arg in args:
                self.skip_prefix(element_type(arg))

    def skip_data(self, t, rows):
        if rows == 0:  # zero rows are zero bytes, in every type
            return
        name, args = split_type(t)
        if name in FIXED:
            self.take(FIXED[name] * rows)
        elif name == "Decimal":
            precision = int(args[0])
            size = 4 if precision <= 9 else 8 if precision <= 18 else 16 if precision <= 38 else 32
            self.take(size * rows)
        elif name == "FixedString":
            self.take(int(args[0]) * rows)
        elif name == "String":
            for _ in range(rows):
                self.string()
        elif name == "Nullable":
            self.take(rows)
            self.skip_data(args[0], rows)
        elif name == "SimpleAggregateFunction":
            self.skip_data(args[1], rows)
        elif name in ("Array", "Map"):
            self.take(8 * (rows - 1))
            total = self.u64()  # the last offset: the nested rows
            if name == "Array":
                self.skip_data(args[0], total)
            else:
                self.skip_data(args[0], total)
                self.skip_data(args[1], total)
        elif name == "Tuple":
            for arg in args:
                self.skip_data(element_type(arg), rows)
        elif name == "LowCardinality":
            keys_type = split_type(args[0])[1][0] if args[0].startswith("Nullable(") else args[0]
            while rows > 0:  # granules of (flags, [keys], indexes)
                flags = self.u64()
                if flags & (1 << 8):
                    raise unsupported("LowCardinality with a global dictionary in a Native answer")
                if flags & (1 << 9):
                    self.skip_data(keys_type, self.u64())
                count = self.u64()
                self.take(count * (1, 2, 4, 8)[flags & 0xFF])
                rows -= count
        else:
            raise unsupported(f"re-framing a Native answer with a column of type {t}")


def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def reframe(native, revision):
    """chdb's revision-0 Native, as ClickHouse writes it for a client at `revision`."""
    r, out = NativeReader(native), bytearray()
    while r.pos < len(native):
        columns, rows = r.varint(), r.varint()
        out += (BLOCK_INFO if revision > 0 else b"") + varint(columns) + varint(rows)
        for _ in range(columns):
            start = r.pos
            r.string()
            column_type = r.string().decode()
            out += native[start:r.pos]
            if revision >= CUSTOM_SERIALIZATION:
                out.append(0)
            start = r.pos
            if rows:
                r.skip_prefix(column_type)
                r.skip_data(column_type, rows)
            out += native[start:r.pos]
    return bytes(out)


# The engine: one chdb session; requests run in it one at a time.

INSERT_FORMAT = re.compile(r"^\s*(INSERT\s.*?)\s+FORMAT\s+(\w+)\s*;?\s*$", re.I | re.S)
FORMAT_CLAUSE = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.I)


def quote_identifier(name):
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def quote_string(value):
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Engine:
    def __init__(self, path):
        self.lock = threading.Lock()
        self.session = chdb_session.Session(str(path))

    def apply(self, schema):
        with self.lock:
            for statement in statements(pathlib.Path(schema).read_text()):
                self.session.query(code(statement))

    def close(self):
        with self.lock:
            if self.session is not None:
                self.session.close()
                self.session = None

    def run(self, sql, insert_data, database, settings, params, default_format):
        """Runs one request's SQL in `database` with `settings` (for this
        query only); chdb's output bytes. With `insert_data` (bytes), `sql`
        is an INSERT ... FORMAT fmt and chdb streams the data into it."""
        with self.lock:
            if self.session is None:
                raise ClickHouseError.of(1002, "UNKNOWN_EXCEPTION", "the stand-in is shutting down")
            changed = []
            try:
                self.session.query(f"USE {quote_identifier(database)}")
                for name, value in settings.items():
                    if not re.fullmatch(r"[A-Za-z_]\w*", name):
                        raise ClickHouseError.of(115, "UNKNOWN_SETTING",
                                                 f"Unknown setting '{name}'")
                    self.session.query(f"SET {name} = {quote_string(value)}")
                    changed.append(name)
                if insert_data is None:
                    return self.session.query(sql, default_format, params=params).bytes()
                statement, fmt = INSERT_FORMAT.match(sql).groups()
                inserter = self.session.send_insert(statement, fmt)
                try:
                    if insert_data:
                        inserter.append(insert_data)
                    inserter.finish()
                except BaseException:
                    inserter.cancel()  # the session takes nothing else while an insert is open
                    raise
                return b""
            except ClickHouseError:
                raise
            except Exception as e:  # chdb's errors are ClickHouse's
                raise ClickHouseError.from_chdb(e) from None
            finally:
                for name in changed:
                    try:
                        self.session.query(f"SET {name} = DEFAULT")
                    except Exception as e:
                        print(f"clickhouse_http: cannot reset setting {name}: {e}", file=sys.stderr)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the driver's pooled connections expect
    engine = None  # set by main()
    credentials = None  # (user, password), set by main() with --user

    def do_GET(self):
        self.serve(b"")

    def do_POST(self):
        try:
            body = self.read_body()
        except ValueError as e:
            self.close_connection = True
            self.sql = ""
            text = f"Code: 1001. DB::Exception: malformed request body: {e}\n"
            self.reply(400, text.encode(), 0, [])
            return
        self.serve(body)

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline(1 << 16).split(b";")[0].strip() or b"x", 16)
                if size == 0:
                    while self.rfile.readline(1 << 16) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                if len(parts[-1]) != size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                    raise ValueError("truncated chunk")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if len(body) != length:
            raise ValueError("truncated body")
        return body

    def serve(self, body):
        url = urllib.parse.urlsplit(self.path)
        params = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        params = {k: v[-1] for k, v in params.items()}
        query = params.get("query")
        self.sql = query or ""  # for the log line
        compress_answer = params.get("compress") == "1"
        try:
            if url.path != "/ping":
                self.authenticate(params)
            if url.path == "/ping" or (url.path == "/" and self.command == "GET" and query is None):
                self.reply(200, b"Ok.\n", len(body), [("Content-Type", "text/html; charset=UTF-8")])
                return
            if url.path != "/":
                raise unsupported(f"the path {url.path}")
            try:
                output, headers = self.execute(params, query, body)
            except ClickHouseError:
                raise
            except Exception as e:  # a fault of the stand-in itself
                raise ClickHouseError.of(1001, "STD_EXCEPTION", f"clickhouse_http stand-in: {e!r}")
            if compress_answer and output:
                output = compress(output)
            self.reply(200, output, len(body), headers)
        except ClickHouseError as e:
            text = (e.text.rstrip() + "\n").encode()
            self.reply(e.status(), compress(text) if compress_answer else text, len(body),
                       [("X-ClickHouse-Exception-Code", str(e.code)),
                        ("Content-Type", "text/plain; charset=UTF-8")])

    def authenticate(self, params):
        """Checks the request's credentials against --user/--password."""
        if self.credentials is None:
            return
        user, password = params.get("user"), params.get("password")
        if self.headers.get("X-ClickHouse-User") is not None:
            user = self.headers["X-ClickHouse-User"]
            password = self.headers.get("X-ClickHouse-Key", "")
        scheme, _, value = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                user = password = None
        if (user, password or "") != self.credentials:
            raise ClickHouseError.of(
                516, "AUTHENTICATION_FAILED",
                f"{user or 'default'}: Authentication failed: password is incorrect, "
                "or there is no user with such name")

    def execute(self, params, query, body):
        if self.headers.get("Content-Encoding", "identity").lower() != "identity":
            raise unsupported(
                f"HTTP compression (Content-Encoding: {self.headers['Content-Encoding']})")
        if self.headers.get("Content-Type", "").startswith("multipart/form-data"):
            raise unsupported("external tables (multipart/form-data)")
        for name in params:
            if name in UNSUPPORTED:
                raise unsupported(f"the URL parameter {name}")
        if params.get("decompress") == "1":
            body = decompress(body)
        # The SQL: the body, or the `query` parameter followed by the body,
        # which is the input of an INSERT ... FORMAT or else more SQL text.
        insert_data = None
        if query is None:
            sql = body.decode("utf-8", "replace")
        elif INSERT_FORMAT.match(query):
            sql, insert_data = query, body
        else:
            sql = query + ("\n" + body.decode("utf-8", "replace") if body else "")
        self.sql = sql
        if not sql.strip():
            raise ClickHouseError.of(62, "SYNTAX_ERROR", "Empty query")
        revision = params.get("client_protocol_version")
        if revision is not None:
            if not revision.isdigit() or int(revision) > MAX_PROTOCOL:
                raise unsupported(f"client_protocol_version={revision} (at most {MAX_PROTOCOL})")
            revision = int(revision)
        default_format = params.get("default_format") or "TabSeparated"
        output = self.engine.run(
            sql, insert_data, params.get("database") or "default",
            {k: v for k, v in params.items()
             if k not in HANDLED | IGNORED and not k.startswith("param_")},
            {k[len("param_"):]: v for k, v in params.items() if k.startswith("param_")},
            default_format)
        clause = FORMAT_CLAUSE.search(sql)
        output_format = clause.group(1) if clause else default_format
        native = output_format.lower() == "native"
        if native and revision:
            output = reframe(output, revision)
        content_type = "application/octet-stream" if native else "text/plain; charset=UTF-8"
        return output, [("Content-Type", content_type)]

    def reply(self, status, body, size_in, headers):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        what = " ".join(self.sql.split())[:80]
        print(f"{self.command} {what!r} -> {status}, {size_in} B in, {len(body)} B out",
              file=sys.stderr, flush=True)

    def log_message(self, *args):
        pass  # one line per request comes from reply()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT (port 0: any free one)")
    parser.add_argument("--path", required=True, help="the chdb database directory")
    parser.add_argument("--schema", help="SQL to apply at start (deploy/clickhouse/schema.sql)")
    parser.add_argument("--user", help="the one user requests must authenticate as")
    parser.add_argument("--password", default="", help="that user's password")
    args = parser.parse_args()
    if args.user is not None:
        Handler.credentials = (args.user, args.password)
    host, _, port = args.listen.rpartition(":")

    engine = Engine(args.path)
    if args.schema:
        engine.apply(args.schema)
    Handler.engine = engine
    server = ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    print(f"listening http://{host}:{server.server_address[1]}", flush=True)
    while not stop.wait(1):
        pass
    server.shutdown()
    server.server_close()
    engine.close()  # waits for the running query
    print("clickhouse_http: stopped", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
