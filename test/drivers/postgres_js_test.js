// postgres.js (postgres) through sluice, with its defaults: every tagged
// template query is prepared as a named statement, per connection.
//
// CLIENTS workers share one postgres() pool of CLIENTS connections and run
// QUERIES queries each from the five statements, a third of them inside
// sql.begin() transactions. postgres.js quietly re-runs a query once when
// the server says its prepared statement is gone; the debug hook counts
// executions, so such a retry fails the test instead of hiding a bug.
'use strict'

const postgres = require('postgres')
// postgres.js exports no package.json: read it from node_modules.
const { version } = JSON.parse(require('fs').readFileSync(
  require('path').join(__dirname, 'node_modules/postgres/package.json'), 'utf8'))
const { conn, CLIENTS, QUERIES, STATEMENTS, params, inTransaction, Checker, failOnUnhandled } = require('./common')

let executions = 0 // of the five statements, retries included

// The five statements as tagged templates (the texts of STATEMENTS).
const QUERY = [
  (sql, a, b) => sql`SELECT ${a}::int + ${b}::int AS v`,
  (sql, a, b) => sql`SELECT ${a}::int * ${b}::int AS v`,
  (sql, a, b) => sql`SELECT ${a}::int::text || ':' || ${b}::int::text AS v`,
  (sql, a, b) => sql`SELECT ${a}::int - ${b}::int AS v`,
  (sql, a, b) => sql`SELECT ${a}::bigint * 1000 + ${b}::int AS v`
]

async function runRound (sql, chk, k, round) {
  for (let j = 0; j < QUERY.length; j++) {
    const i = round * QUERY.length + j
    const [a, b] = params(k, i)
    const rows = await QUERY[j](sql, a, b)
    chk.check(`client ${k} query ${i}`, rows[0].v, STATEMENTS[j][1](a, b))
  }
}

async function worker (sql, k, chk) {
  try {
    for (let round = 0; round < QUERIES / QUERY.length; round++) {
      if (inTransaction(round)) {
        await sql.begin(tx => runRound(tx, chk, k, round))
      } else {
        await runRound(sql, chk, k, round)
      }
    }
  } catch (err) {
    chk.fail(`client ${k}`, err)
  }
}

async function main () {
  const chk = new Checker(`postgres.js ${version}`)
  failOnUnhandled(chk.name)
  const texts = new Set(STATEMENTS.map(([text]) => text))
  const sql = postgres({
    ...conn,
    max: CLIENTS,
    ssl: false,
    connect_timeout: 30,
    onnotice: () => {},
    debug: (id, text) => { if (texts.has(text)) executions++ }
  })
  const workers = []
  for (let k = 1; k <= CLIENTS; k++) workers.push(worker(sql, k, chk))
  await Promise.all(workers)
  await sql.end({ timeout: 5 })
  if (executions !== CLIENTS * QUERIES) { chk.fail('executions', `${executions} for ${CLIENTS * QUERIES} queries: postgres.js retried after an error`) }
  chk.finish(CLIENTS * QUERIES)
}

main()
