"""psycopg 3 through sluice: server-side prepared statements two ways.

Half of the CLIENTS connections set prepare_threshold = 0, so psycopg
prepares every query as a named statement (_pg3_N) on its first run; the
other half keep the default threshold and pass prepare=True to execute().
Each runs QUERIES queries from the five statements in autocommit mode, a
third of them inside conn.transaction() blocks.

psycopg 3.1 evicts from its own cache (prepared_max, 100) with an SQL
DEALLOCATE, which transaction pooling cannot map: keep below it.
"""
import sys
import threading

import psycopg

from common import (CLIENTS, DBNAME, HOST, PASSWORD, PORT, QUERIES,
                    STATEMENTS, USER, Checker, in_transaction, params)

# psycopg's placeholders are %s; ours are $1, $2.
PSYCOPG_STATEMENTS = [(sql.replace("$1", "%s").replace("$2", "%s"), want)
                      for sql, want in STATEMENTS]


def run_round(conn, chk, client, round_no, explicit):
    for j, (sql, want) in enumerate(PSYCOPG_STATEMENTS):
        i = round_no * len(PSYCOPG_STATEMENTS) + j
        a, b = params(client, i)
        if explicit:
            cur = conn.execute(sql, (a, b), prepare=True)
        else:
            cur = conn.execute(sql, (a, b))
        chk.check(f"client {client} query {i}", cur.fetchone()[0], want(a, b))


def client(client_no, chk, explicit):
    try:
        conn = psycopg.connect(host=HOST, port=PORT, user=USER,
                               password=PASSWORD, dbname=DBNAME,
                               sslmode="disable", connect_timeout=30,
                               autocommit=True)
    except Exception as exc:
        chk.fail(f"client {client_no} connect", exc)
        return
    if not explicit:
        conn.prepare_threshold = 0
    try:
        for round_no in range(QUERIES // len(STATEMENTS)):
            if in_transaction(round_no):
                with conn.transaction():
                    run_round(conn, chk, client_no, round_no, explicit)
            else:
                run_round(conn, chk, client_no, round_no, explicit)
    except Exception as exc:
        how = "prepare=True" if explicit else "prepare_threshold=0"
        chk.fail(f"client {client_no} ({how})", exc)
    finally:
        conn.close()


def main():
    chk = Checker(f"psycopg {psycopg.__version__}")
    threads = [threading.Thread(target=client, args=(k, chk, k % 2 == 0))
               for k in range(1, CLIENTS + 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    chk.finish(CLIENTS * QUERIES)


if __name__ == "__main__":
    main()
    sys.exit(0)
