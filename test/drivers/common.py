"""Shared by the Python driver tests (see run.sh): where to connect, the
five statements every driver runs, and how a test counts and reports.

run.sh exports PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE.
"""
import os
import sys
import threading

HOST = os.environ.get("PGHOST", "127.0.0.1")
PORT = int(os.environ.get("PGPORT", "6432"))
USER = os.environ.get("PGUSER", "postgres")
PASSWORD = os.environ.get("PGPASSWORD", "")
DBNAME = os.environ.get("PGDATABASE", USER)

CLIENTS = 12        # connections per driver, over a pool of a few servers
QUERIES = 600       # per connection: 120 rounds of the five statements

# (text with $n placeholders, the value it must return for (a, b)). The
# same five in every driver; node's are in common.js.
STATEMENTS = [
    ("SELECT $1::int + $2::int AS v", lambda a, b: a + b),
    ("SELECT $1::int * $2::int AS v", lambda a, b: a * b),
    ("SELECT $1::int::text || ':' || $2::int::text AS v",
     lambda a, b: f"{a}:{b}"),
    ("SELECT $1::int - $2::int AS v", lambda a, b: a - b),
    ("SELECT $1::bigint * 1000 + $2::int AS v", lambda a, b: a * 1000 + b),
]


def params(client, i):
    """The parameters of query i of a client: distinct across clients."""
    return client * 1000 + i, i % 7 + 1


def in_transaction(round_no):
    """Every third round of five runs inside BEGIN ... COMMIT."""
    return round_no % 3 == 0


class Checker:
    """Counts checked values and keeps the first failures; thread-safe."""

    def __init__(self, name):
        self.name = name
        self.checked = 0
        self.failures = []
        self.lock = threading.Lock()

    def check(self, what, got, want):
        with self.lock:
            self.checked += 1
            if str(got) != str(want):
                self.failures.append(f"{what}: got {got!r}, want {want!r}")

    def fail(self, what, exc):
        with self.lock:
            self.failures.append(f"{what}: {type(exc).__name__}: {exc}")

    def report(self):
        """Prints one line, and the first failures."""
        if not self.failures:
            print(f"ok   {self.name}: {self.checked} values checked")
            return
        print(f"FAIL {self.name}: {len(self.failures)} failures, "
              f"{self.checked} values checked")
        for line in self.failures[:10]:
            print(f"  {line}")
        sys.stdout.flush()

    def finish(self, expected):
        """Reports; exits 1 on failure or if not all values were checked."""
        if self.checked != expected and not self.failures:
            self.failures.append(f"checked {self.checked} values, "
                                 f"expected {expected}")
        self.report()
        if self.failures:
            sys.exit(1)
