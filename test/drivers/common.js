// Shared by the Node driver tests (see run.sh): where to connect, the five
// statements every driver runs (as in common.py), and how a test counts and
// reports. run.sh exports PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE.
'use strict'

const env = process.env

exports.conn = {
  host: env.PGHOST || '127.0.0.1',
  port: Number(env.PGPORT || 6432),
  user: env.PGUSER || 'postgres',
  password: env.PGPASSWORD || '',
  database: env.PGDATABASE || env.PGUSER || 'postgres'
}

exports.CLIENTS = 12 // connections per driver
exports.QUERIES = 600 // per connection: 120 rounds of the five statements

// [text with $n placeholders, the value it must return for (a, b)]
exports.STATEMENTS = [
  ['SELECT $1::int + $2::int AS v', (a, b) => a + b],
  ['SELECT $1::int * $2::int AS v', (a, b) => a * b],
  ["SELECT $1::int::text || ':' || $2::int::text AS v", (a, b) => `${a}:${b}`],
  ['SELECT $1::int - $2::int AS v', (a, b) => a - b],
  ['SELECT $1::bigint * 1000 + $2::int AS v', (a, b) => a * 1000 + b]
]

// The parameters of query i of a client: distinct across clients.
exports.params = (client, i) => [client * 1000 + i, (i % 7) + 1]

// Every third round of five runs inside BEGIN ... COMMIT.
exports.inTransaction = (round) => round % 3 === 0

// A driver's own unhandled error (e.g. from its connection setup) ends the
// test with one line instead of a stack trace.
exports.failOnUnhandled = (name) => {
  process.on('unhandledRejection', (err) => {
    console.log(`FAIL ${name}: unhandled ${err && err.code ? err.code + ' ' : ''}${err && err.message ? err.message : err}`)
    process.exit(1)
  })
}

// Counts checked values and keeps the first failures.
exports.Checker = class Checker {
  constructor (name) {
    this.name = name
    this.checked = 0
    this.failures = []
  }

  check (what, got, want) {
    this.checked++
    if (String(got) !== String(want)) { this.failures.push(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`) }
  }

  fail (what, err) {
    this.failures.push(`${what}: ${err && err.code ? err.code + ' ' : ''}${err && err.message ? err.message : err}`)
  }

  // Prints one line (and the first failures); exits 1 on failure.
  finish (expected) {
    if (this.checked !== expected && this.failures.length === 0) { this.failures.push(`checked ${this.checked} values, expected ${expected}`) }
    if (this.failures.length) {
      console.log(`FAIL ${this.name}: ${this.failures.length} failures, ${this.checked} values checked`)
      for (const line of this.failures.slice(0, 10)) console.log(`  ${line}`)
      process.exit(1)
    }
    console.log(`ok   ${this.name}: ${this.checked} values checked`)
    process.exit(0)
  }
}
