// node-postgres (pg) through sluice: named queries.
//
// A query config with a name ({ name, text, values }) makes pg send Parse
// with that name the first time on a connection and only Bind afterwards.
// CLIENTS connections run QUERIES named queries each from the five
// statements, a third of them inside BEGIN ... COMMIT.
'use strict'

const { Client } = require('pg')
const { version } = require('pg/package.json')
const { conn, CLIENTS, QUERIES, STATEMENTS, params, inTransaction, Checker, failOnUnhandled } = require('./common')

async function runRound (client, chk, k, round) {
  for (let j = 0; j < STATEMENTS.length; j++) {
    const [text, want] = STATEMENTS[j]
    const i = round * STATEMENTS.length + j
    const [a, b] = params(k, i)
    const res = await client.query({ name: `stmt_${j}`, text, values: [a, b] })
    chk.check(`client ${k} query ${i}`, res.rows[0].v, want(a, b))
  }
}

async function worker (k, chk) {
  const client = new Client({ ...conn, connectionTimeoutMillis: 30000, query_timeout: 30000 })
  try {
    await client.connect()
    for (let round = 0; round < QUERIES / STATEMENTS.length; round++) {
      const tx = inTransaction(round)
      if (tx) await client.query('BEGIN')
      await runRound(client, chk, k, round)
      if (tx) await client.query('COMMIT')
    }
  } catch (err) {
    chk.fail(`client ${k}`, err)
  } finally {
    await client.end().catch(() => {})
  }
}

async function main () {
  const chk = new Checker(`node-postgres ${version}`)
  failOnUnhandled(chk.name)
  const workers = []
  for (let k = 1; k <= CLIENTS; k++) workers.push(worker(k, chk))
  await Promise.all(workers)
  chk.finish(CLIENTS * QUERIES)
}

main()
