"""asyncpg through sluice, with its default statement cache.

asyncpg prepares every query as a named statement (__asyncpg_stmt_N__) and
keeps up to 100 of them per connection. CLIENTS connections run QUERIES
queries each from the five statements, a third of them inside
transactions; then each uses an explicit Connection.prepare(). One more
connection has a statement cache of 2, so asyncpg keeps closing and
re-preparing statements (Close messages) while cycling through the five.
"""
import asyncio
import os
import sys

import asyncpg

from common import (CLIENTS, DBNAME, HOST, PASSWORD, PORT, QUERIES,
                    STATEMENTS, USER, Checker, in_transaction, params)

EXPLICIT = 20        # executions of the explicitly prepared statement
TOTAL_TIMEOUT = 60   # seconds for everything; a query gives up after 30


async def connect(**extra):
    return await asyncpg.connect(host=HOST, port=PORT, user=USER,
                                 password=PASSWORD, database=DBNAME,
                                 ssl=False, timeout=30, command_timeout=30,
                                 **extra)


async def run_round(conn, chk, client, round_no):
    for j, (sql, want) in enumerate(STATEMENTS):
        i = round_no * len(STATEMENTS) + j
        a, b = params(client, i)
        got = await conn.fetchval(sql, a, b)
        chk.check(f"client {client} query {i}", got, want(a, b))


async def client(client_no, chk, **extra):
    try:
        conn = await connect(**extra)
    except Exception as exc:
        chk.fail(f"client {client_no} connect", exc)
        return
    try:
        for round_no in range(QUERIES // len(STATEMENTS)):
            if in_transaction(round_no):
                async with conn.transaction():
                    await run_round(conn, chk, client_no, round_no)
            else:
                await run_round(conn, chk, client_no, round_no)
        stmt = await conn.prepare(STATEMENTS[1][0])
        for i in range(EXPLICIT):
            chk.check(f"client {client_no} explicit {i}",
                      await stmt.fetchval(i, client_no), i * client_no)
    except Exception as exc:
        chk.fail(f"client {client_no}", exc)
    finally:
        try:
            await conn.close(timeout=5)
        except Exception:
            conn.terminate()


async def main():
    chk = Checker(f"asyncpg {asyncpg.__version__}")
    tasks = [client(k, chk) for k in range(1, CLIENTS + 1)]
    tasks.append(client(CLIENTS + 1, chk, statement_cache_size=2))
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), TOTAL_TIMEOUT)
    except asyncio.TimeoutError:
        # A connection stuck in a cancel or close would hang the exit too.
        chk.fail("all clients", f"not done within {TOTAL_TIMEOUT} s")
        chk.report()
        os._exit(1)
    chk.finish((CLIENTS + 1) * (QUERIES + EXPLICIT))


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
