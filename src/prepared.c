/*
 * prepared.c - protocol-level named prepared statements in transaction and
 * statement mode (max_prepared_statements), as PgBouncer 1.21.
 *
 * Consecutive transactions of a client land on different servers, so a
 * statement it prepared on one is missing on the next. sluice keeps:
 *   - a registry of distinct statements (pool + query text + parameter
 *     types), each with one server-side name, sluice_<random>_<id>, shared
 *     by the clients of that pool;
 *   - per client, its names -> registry statements;
 *   - per server, the statements it has prepared, most recently used first,
 *     at most max_prepared_statements (the least recently used is closed).
 * A client's Parse, Bind, Describe and Close are rewritten to the server
 * name; a statement is prepared on a server just before a Bind or Describe
 * needs it, and the server's answers to sluice's own Parse and Close are
 * swallowed. Answers come back in request order, so a ring of pending
 * answers per server says which to swallow; a batch that fails skips to its
 * Sync, so at each ReadyForQuery the unanswered entries of finished batches
 * are dropped (a Parse never answered is not prepared after all).
 *
 * Ownership: a statement is reference counted by the client names, server
 * entries and pending answers that point to it, so none of them can see it
 * freed. A server's statements are forgotten when the server says they are
 * gone (the CommandComplete of DEALLOCATE ALL or DISCARD ALL), never on the
 * strength of a text that may not run.
 *
 * Bounds (PgBouncer has none): a Parse, Describe or Close is held whole up
 * to PREP_MAX_MESSAGE; a client has at most max_client_prepared_statements
 * names, whose names and texts take at most PREP_MAX_CLIENT_BYTES. Past
 * them the client gets an error and is closed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "client.h"
#include "codec.h"
#include "config.h"
#include "log.h"
#include "pool.h"
#include "prepared.h"
#include "prepared_sql.h"
#include "server.h"
#include "sluice.h"
#include "stats.h"

/* Bytes of a Bind needed to read its two names (NAMEDATALEN is 64). */
#define BIND_PREFIX (PG_HEADER_LEN + 2 * 64 + 64)
/* A name no statement has: Close of it is answered, and harmless. */
#define NO_SUCH_STATEMENT "sluice_closed"
/* What sluice's server-side names start with; SQL may not touch them. */
#define OWN_PREFIX "sluice_"
#define PREP_MAX_MESSAGE (1024 * 1024)
#define PREP_MAX_CLIENT_BYTES (16 * 1024 * 1024)
#define SQLSTATE_CONFIGURATION_LIMIT "53400"
#define SQLSTATE_PROGRAM_LIMIT "54000"
#define SQLSTATE_INSUFFICIENT_PRIVILEGE "42501"

struct prep_stmt {
	struct prep_stmt *next;    /* hash chain */
	uint64_t id;
	uint64_t hash;
	uint64_t pool_id;          /* the pool it belongs to (struct pool) */
	uint32_t refs;             /* client names, server entries, answers */
	bool valid;                /* a server of its pool accepted it once */
	char *query;
	uint32_t query_len;
	uint8_t *types;            /* int16 count + int32 oids, as in Parse */
	uint32_t types_len;
	char name[48];             /* sluice_<16 hex random>_<id> */
};

struct prep_registry {
	struct prep_stmt **buckets;
	size_t nbuckets;
	size_t count;
	uint64_t next_id;
	uint64_t next_pool_id;
	char prefix[32];           /* sluice_<16 hex>, random per process, so
	                              that no name can be guessed */
};

/* A client's name for a statement. */
struct prep_name {
	struct prep_name *next;
	struct prep_stmt *stmt;
	char name[];
};

struct prep_client {
	struct prep_name **buckets;
	size_t nbuckets;
	size_t count;              /* names, <= max_client_prepared_statements */
	size_t bytes;              /* their names and texts, <= PREP_MAX_CLIENT_BYTES */
};

/* A statement prepared on a server. */
struct prep_entry {
	struct prep_entry *prev;
	struct prep_entry *next;
	struct prep_stmt *stmt;
	bool confirmed;            /* its ParseComplete came back */
	bool ours;                 /* sluice's own Parse, not the client's */
	uint64_t parse_id;         /* the Parse that made it (prep_pending) */
	uint64_t parse_seq;        /* the batch (Syncs before) its Parse went in */
};

static uint64_t fnv(uint64_t h, const void *data, size_t len)
{
	const uint8_t *p = data;

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

/* --- the registry ----------------------------------------------------- */

static int grow_buckets(void ***buckets, size_t *nbuckets, size_t count,
                        size_t (*slot)(const void *item, size_t n),
                        void **(*next_of)(void *item))
{
	size_t n = *nbuckets ? *nbuckets * 2 : 64;
	void **grown;

	if (count < *nbuckets * 2 && *nbuckets)
		return 0;
	grown = calloc(n, sizeof(*grown));
	if (!grown)
		return -1;
	for (size_t i = 0; i < *nbuckets; i++) {
		void *item = (*buckets)[i];

		while (item) {
			void *next = *next_of(item);
			size_t s = slot(item, n);

			*next_of(item) = grown[s];
			grown[s] = item;
			item = next;
		}
	}
	free(*buckets);
	*buckets = grown;
	*nbuckets = n;
	return 0;
}

static size_t stmt_slot(const void *item, size_t n)
{
	return ((const struct prep_stmt *)item)->hash % n;
}

static void **stmt_next(void *item)
{
	return (void **)&((struct prep_stmt *)item)->next;
}

static struct prep_registry *registry_of(struct sluice *ctx)
{
	struct prep_registry *reg = ctx->prepared;
	uint8_t secret[8];

	if (reg)
		return reg;
	if (auth_random_bytes(secret, sizeof(secret)) < 0 ||
	    !(reg = calloc(1, sizeof(*reg))))
		return NULL;
	snprintf(reg->prefix, sizeof(reg->prefix),
	         OWN_PREFIX "%02x%02x%02x%02x%02x%02x%02x%02x", secret[0],
	         secret[1], secret[2], secret[3], secret[4], secret[5], secret[6],
	         secret[7]);
	ctx->prepared = reg;
	return reg;
}

/* The pool's key in the registry: statements, and so what is known to be
 * valid, are never shared between pools. 0 on ENOMEM. */
static uint64_t pool_key(struct pool *pool)
{
	struct prep_registry *reg = registry_of(pool->ctx);

	if (!reg)
		return 0;
	if (!pool->prep_id)
		pool->prep_id = ++reg->next_pool_id;
	return pool->prep_id;
}

static uint64_t stmt_hash(uint64_t pool_id, const char *query,
                          const uint8_t *types, uint32_t types_len)
{
	uint64_t h = fnv(14695981039346656037ull, &pool_id, sizeof(pool_id));

	return fnv(fnv(h, query, strlen(query) + 1), types, types_len);
}

/* The statement for (pool, query, types) if the registry has it. */
static struct prep_stmt *stmt_find(struct prep_registry *reg, uint64_t pool_id,
                                   const char *query, const uint8_t *types,
                                   uint32_t types_len)
{
	uint64_t hash = stmt_hash(pool_id, query, types, types_len);

	if (!reg || !reg->nbuckets)
		return NULL;
	for (struct prep_stmt *st = reg->buckets[hash % reg->nbuckets]; st; st = st->next)
		if (st->hash == hash && st->pool_id == pool_id &&
		    st->types_len == types_len && strcmp(st->query, query) == 0 &&
		    memcmp(st->types, types, types_len) == 0)
			return st;
	return NULL;
}

static struct prep_stmt *stmt_new(struct prep_registry *reg, uint64_t pool_id,
                                  const char *query, const uint8_t *types,
                                  uint32_t types_len)
{
	struct prep_stmt *st = calloc(1, sizeof(*st));

	if (!st || !(st->query = strdup(query)) ||
	    !(st->types = malloc(types_len ? types_len : 1))) {
		if (st)
			free(st->query);
		free(st);
		return NULL;
	}
	memcpy(st->types, types, types_len);
	st->types_len = types_len;
	st->query_len = (uint32_t)strlen(query);
	st->pool_id = pool_id;
	st->hash = stmt_hash(pool_id, query, types, types_len);
	st->id = ++reg->next_id;
	snprintf(st->name, sizeof(st->name), "%s_%llu", reg->prefix,
	         (unsigned long long)st->id);
	st->next = reg->buckets[st->hash % reg->nbuckets];
	reg->buckets[st->hash % reg->nbuckets] = st;
	reg->count++;
	return st;
}

/* The statement for (pool, query, types), made on first use; NULL on
 * ENOMEM. A new one has no reference yet: the caller takes one. */
static struct prep_stmt *stmt_get(struct pool *pool, const char *query,
                                  const uint8_t *types, uint32_t types_len)
{
	struct prep_registry *reg = registry_of(pool->ctx);
	uint64_t pool_id = pool_key(pool);
	struct prep_stmt *st;

	if (!reg || !pool_id ||
	    grow_buckets((void ***)&reg->buckets, &reg->nbuckets, reg->count,
	                 stmt_slot, stmt_next) < 0)
		return NULL;
	st = stmt_find(reg, pool_id, query, types, types_len);
	return st ? st : stmt_new(reg, pool_id, query, types, types_len);
}

/* Drops a reference; the statement goes when nobody holds it. */
static void stmt_unref(struct sluice *ctx, struct prep_stmt *st)
{
	struct prep_registry *reg = ctx->prepared;

	if (st->refs > 0 && --st->refs > 0)
		return;
	for (struct prep_stmt **link = &reg->buckets[st->hash % reg->nbuckets]; *link;
	     link = &(*link)->next) {
		if (*link == st) {
			*link = st->next;
			break;
		}
	}
	reg->count--;
	free(st->query);
	free(st->types);
	free(st);
}

/* --- a client's names ------------------------------------------------- */

static size_t name_slot(const void *item, size_t n)
{
	const char *name = ((const struct prep_name *)item)->name;

	return fnv(14695981039346656037ull, name, strlen(name)) % n;
}

static void **name_next(void *item)
{
	return (void **)&((struct prep_name *)item)->next;
}

static struct prep_name **name_link(struct prep_client *pc, const char *name)
{
	size_t slot = fnv(14695981039346656037ull, name, strlen(name)) % pc->nbuckets;
	struct prep_name **link = &pc->buckets[slot];

	while (*link && strcmp((*link)->name, name) != 0)
		link = &(*link)->next;
	return link;
}

/* Counted twice: per pool for SHOW PREPARED_STATS, per database for
 * PgBouncer's SHOW STATS columns. */
static void count_client_parse(struct pool *pool)
{
	pool->client_parses++;
	stats_prepared(pool, STATS_CLIENT_PARSE);
}

static struct prep_stmt *client_lookup(const struct client *c, const char *name)
{
	struct prep_name **link;

	if (!c->prep || !c->prep->nbuckets)
		return NULL;
	link = name_link(c->prep, name);
	return *link ? (*link)->stmt : NULL;
}

/* What a name costs against PREP_MAX_CLIENT_BYTES. */
static size_t name_cost(const char *name, const struct prep_stmt *st)
{
	return strlen(name) + st->query_len + st->types_len;
}

/* -1 on ENOMEM. The caller has checked the bounds (client_refuses). */
static int client_add(struct client *c, const char *name, struct prep_stmt *st)
{
	struct prep_client *pc = c->prep;
	struct prep_name *pn;
	struct prep_name **link;

	if (!pc && !(pc = c->prep = calloc(1, sizeof(*pc))))
		return -1;
	if (grow_buckets((void ***)&pc->buckets, &pc->nbuckets, pc->count,
	                 name_slot, name_next) < 0 ||
	    !(pn = malloc(sizeof(*pn) + strlen(name) + 1)))
		return -1;
	strcpy(pn->name, name);
	pn->stmt = st;
	st->refs++;
	link = name_link(pc, name);
	pn->next = *link;
	*link = pn;
	pc->count++;
	pc->bytes += name_cost(name, st);
	return 0;
}

/* A named Parse past the client's bounds fails the client: true then. */
static bool client_refuses(struct client *c, const char *name,
                           const char *query, uint32_t types_len)
{
	const struct prep_client *pc = c->prep;
	size_t cost = strlen(name) + strlen(query) + types_len;
	int max_names = c->conn.ctx->config->max_client_prepared_statements;

	if (pc && pc->count >= (size_t)max_names) {
		client_fail(c, SQLSTATE_CONFIGURATION_LIMIT,
		            "too many prepared statements: a client may have %d "
		            "(max_client_prepared_statements)", max_names);
		return true;
	}
	if ((pc ? pc->bytes : 0) + cost > PREP_MAX_CLIENT_BYTES) {
		client_fail(c, SQLSTATE_CONFIGURATION_LIMIT,
		            "prepared statements too large: a client's names and "
		            "texts may take %d MiB", PREP_MAX_CLIENT_BYTES >> 20);
		return true;
	}
	return false;
}

/* Forgets the client's name; if st, only while it still names st (a
 * later Parse may have reused the name). */
static void client_remove(struct client *c, const char *name,
                          const struct prep_stmt *st)
{
	struct prep_name **link;
	struct prep_name *pn;

	if (!c->prep || !c->prep->nbuckets)
		return;
	link = name_link(c->prep, name);
	if (!(pn = *link) || (st && pn->stmt != st))
		return;
	*link = pn->next;
	c->prep->count--;
	c->prep->bytes -= name_cost(pn->name, pn->stmt);
	stmt_unref(c->conn.ctx, pn->stmt);
	free(pn);
}

void prepared_client_free(struct client *c)
{
	struct prep_client *pc = c->prep;

	if (!pc)
		return;
	for (size_t i = 0; i < pc->nbuckets; i++) {
		while (pc->buckets[i]) {
			struct prep_name *pn = pc->buckets[i];

			pc->buckets[i] = pn->next;
			stmt_unref(c->conn.ctx, pn->stmt);
			free(pn);
		}
	}
	free(pc->buckets);
	free(pc);
	c->prep = NULL;
}

/* --- a server's statements -------------------------------------------- */

/* O(n), n <= max_prepared_statements. */
static struct prep_entry *server_find(struct server *s, const struct prep_stmt *st)
{
	for (struct prep_entry *e = s->prep.lru; e; e = e->next)
		if (e->stmt == st)
			return e;
	return NULL;
}

static void lru_unlink(struct prep_server *ps, struct prep_entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		ps->lru = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		ps->lru_tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_push_front(struct prep_server *ps, struct prep_entry *e)
{
	e->next = ps->lru;
	e->prev = NULL;
	if (ps->lru)
		ps->lru->prev = e;
	ps->lru = e;
	if (!ps->lru_tail)
		ps->lru_tail = e;
}

static void server_forget(struct server *s, struct prep_entry *e)
{
	lru_unlink(&s->prep, e);
	s->prep.count--;
	stmt_unref(s->conn.ctx, e->stmt);
	free(e);
}

void prepared_server_clear(struct server *s)
{
	while (s->prep.lru)
		server_forget(s, s->prep.lru);
}

void prepared_registry_free(struct sluice *ctx)
{
	struct prep_registry *reg = ctx->prepared;

	if (!reg)
		return;
	/* Every client and server has let go by now; anything left is freed. */
	for (size_t i = 0; i < reg->nbuckets; i++) {
		while (reg->buckets[i]) {
			struct prep_stmt *st = reg->buckets[i];

			reg->buckets[i] = st->next;
			free(st->query);
			free(st->types);
			free(st);
		}
	}
	free(reg->buckets);
	free(reg);
	ctx->prepared = NULL;
}

/* --- pending answers -------------------------------------------------- */

/* Notes an answer to come; a Parse's statement is held until it comes.
 * -1 on ENOMEM (nothing noted). */
static int pending_push(struct prep_server *ps, uint8_t kind, bool swallow,
                        struct prep_stmt *st, const char *client_name)
{
	struct prep_pending *p;
	char *name_copy = NULL;

	if (client_name && !(name_copy = strdup(client_name)))
		return -1;
	if (ps->pending_len == ps->pending_cap) {
		uint32_t cap = ps->pending_cap ? ps->pending_cap * 2 : 16;
		struct prep_pending *grown = malloc(cap * sizeof(*grown));

		if (!grown) {
			free(name_copy);
			return -1;
		}
		for (uint32_t i = 0; i < ps->pending_len; i++)
			grown[i] = ps->pending[(ps->pending_head + i) % ps->pending_cap];
		free(ps->pending);
		ps->pending = grown;
		ps->pending_cap = cap;
		ps->pending_head = 0;
	}
	p = &ps->pending[(ps->pending_head + ps->pending_len++) % ps->pending_cap];
	p->kind = kind;
	p->swallow = swallow;
	p->stmt = st;
	if (st)
		st->refs++;
	p->client_name = name_copy;
	p->parse_id = ps->parses_sent;
	p->sync_seq = ps->syncs_sent;
	return 0;
}

static struct prep_pending *pending_front(struct prep_server *ps)
{
	return ps->pending_len ? &ps->pending[ps->pending_head] : NULL;
}

static void pending_pop(struct server *s)
{
	struct prep_server *ps = &s->prep;
	struct prep_pending *p = &ps->pending[ps->pending_head];

	free(p->client_name);
	if (p->stmt)
		stmt_unref(s->conn.ctx, p->stmt);
	ps->pending_head = (ps->pending_head + 1) % ps->pending_cap;
	ps->pending_len--;
}

/* True if a client Parse of name (for st) still waits for its answer. */
static bool pending_names(const struct prep_server *ps, const char *name,
                          const struct prep_stmt *st)
{
	for (uint32_t i = 0; i < ps->pending_len; i++) {
		const struct prep_pending *p =
			&ps->pending[(ps->pending_head + i) % ps->pending_cap];

		if (p->stmt == st && p->client_name && strcmp(p->client_name, name) == 0)
			return true;
	}
	return false;
}

static void remember_failed(struct server *s, const struct prep_stmt *st,
                            const char *client_name)
{
	struct prep_server *ps = &s->prep;
	uint32_t i = ps->recent_next++ % 4;

	snprintf(ps->recent[i].server_name, sizeof(ps->recent[i].server_name),
	         "%s", st->name);
	snprintf(ps->recent[i].name, sizeof(ps->recent[i].name), "%s", client_name);
}

/* The client waits for this server's answers (prepared_must_wait): it may
 * go on once one has come. */
static void wake_client(struct server *s)
{
	if (!s->prep.stalled)
		return;
	s->prep.stalled = false;
	if (s->client && !s->client->conn.closing)
		conn_want_read(&s->client->conn, true);
}

void prepared_sync_sent(struct server *s)
{
	s->prep.syncs_sent++;
}

/* A Parse of a finished batch that was never answered: it failed or was
 * skipped, so it prepared nothing, as in PostgreSQL. */
static void parse_unanswered(struct server *s, const struct prep_pending *p)
{
	struct prep_entry *e = server_find(s, p->stmt);

	/* A Bind of it already on its way must hear the client's name. */
	if (p->client_name)
		remember_failed(s, p->stmt, p->client_name);
	/* Unless a later Parse made the entry again. */
	if (e && e->parse_id == p->parse_id)
		server_forget(s, e);
	if (p->client_name && s->client)
		client_remove(s->client, p->client_name, p->stmt);
}

void prepared_ready(struct server *s)
{
	struct prep_server *ps = &s->prep;
	struct prep_pending *p;

	ps->syncs_answered++;
	/* What a finished batch did not answer, it skipped after an error. */
	while ((p = pending_front(ps)) && p->sync_seq < ps->syncs_answered) {
		if (p->kind == PG_MSG_PARSE && p->stmt)
			parse_unanswered(s, p);
		pending_pop(s);
	}
	free(ps->rename_to);
	ps->rename_to = NULL;
	/* Every answer counted has come: the count is right again. */
	if (ps->syncs_answered == ps->syncs_sent)
		ps->uncounted = false;
	wake_client(s);
}

void prepared_server_free(struct server *s)
{
	prepared_server_clear(s);
	while (s->prep.pending_len > 0)
		pending_pop(s);
	free(s->prep.pending);
	free(s->prep.rename_to);
	memset(&s->prep, 0, sizeof(s->prep));
}

/* --- building messages ------------------------------------------------ */

static void queue_parse(struct server *s, const struct prep_stmt *st)
{
	struct msgbuf mb;

	msgbuf_init(&mb);
	msgbuf_begin(&mb, PG_MSG_PARSE);
	msgbuf_put_str(&mb, st->name);
	msgbuf_put_str(&mb, st->query);
	msgbuf_put_bytes(&mb, st->types, st->types_len);
	msgbuf_end(&mb);
	conn_queue_msgbuf(&s->conn, &mb);
	msgbuf_free(&mb);
}

static void queue_close(struct server *s, const char *name)
{
	struct msgbuf mb;

	msgbuf_init(&mb);
	msgbuf_begin(&mb, PG_MSG_CLOSE);
	msgbuf_put_u8(&mb, 'S');
	msgbuf_put_str(&mb, name);
	msgbuf_end(&mb);
	conn_queue_msgbuf(&s->conn, &mb);
	msgbuf_free(&mb);
}

/* Closes the least recently used statements until one more fits. */
static bool make_room(struct server *s)
{
	struct prep_server *ps = &s->prep;
	int max = s->pool->ctx->config->max_prepared_statements;

	while (ps->count >= (uint32_t)max && ps->lru_tail) {
		/* A pending answer still holds the statement if it needs it. */
		if (pending_push(ps, PG_MSG_CLOSE, true, NULL, NULL) < 0)
			return false;
		queue_close(s, ps->lru_tail->stmt->name);
		server_forget(s, ps->lru_tail);
	}
	return true;
}

/* Makes room and prepares st on s; client_name: the client's own Parse
 * (its answer goes to the client), NULL: sluice's (swallowed). False if
 * memory ran out. */
static bool prepare_on(struct server *s, struct prep_stmt *st,
                       const char *client_name)
{
	bool swallow = client_name == NULL;
	struct prep_server *ps = &s->prep;
	struct prep_entry *e;

	if (!make_room(s) || !(e = calloc(1, sizeof(*e))))
		return false;
	ps->parses_sent++;
	if (pending_push(ps, PG_MSG_PARSE, swallow, st, client_name) < 0) {
		free(e);
		return false;
	}
	queue_parse(s, st);
	e->stmt = st;
	e->ours = swallow;
	e->parse_id = ps->parses_sent;
	e->parse_seq = ps->syncs_sent;
	st->refs++;
	lru_push_front(ps, e);
	ps->count++;
	s->pool->server_parses++;
	stats_prepared(s->pool, STATS_SERVER_PARSE);
	return true;
}

/* Sends e's statement again in this batch: the batch its Parse went in
 * may fail and skip it (the Close makes that safe either way). */
static bool prepare_again(struct server *s, struct prep_entry *e)
{
	struct prep_server *ps = &s->prep;

	if (pending_push(ps, PG_MSG_CLOSE, true, NULL, NULL) < 0)
		return false;
	queue_close(s, e->stmt->name);
	ps->parses_sent++;
	if (pending_push(ps, PG_MSG_PARSE, true, e->stmt, NULL) < 0)
		return false;
	queue_parse(s, e->stmt);
	e->parse_id = ps->parses_sent;
	e->parse_seq = ps->syncs_sent;
	return true;
}

/* True if e's Parse went in an earlier batch and is not answered yet. */
static bool unanswered_before(const struct server *s, const struct prep_entry *e)
{
	return !e->confirmed && e->parse_seq != s->prep.syncs_sent;
}

/* st prepared on s, preparing it now if needed (its answer swallowed). */
static bool ensure_prepared(struct server *s, struct prep_stmt *st)
{
	struct prep_entry *e = server_find(s, st);

	if (!e)
		return prepare_on(s, st, NULL);
	/* Normally the client waited for the answer (prepared_must_wait);
	 * when that could hang, the statement is sent again instead. */
	if (s->prep.uncounted && unanswered_before(s, e) && !prepare_again(s, e))
		return false;
	lru_unlink(&s->prep, e);
	lru_push_front(&s->prep, e);
	return true;
}

/* --- the client's messages -------------------------------------------- */

bool prepared_active(const struct client *c)
{
	const struct pool *pool = c->pool;

	return pool && c->conn.ctx->config->max_prepared_statements > 0 &&
	       (pool->pool_mode == POOL_MODE_TRANSACTION ||
	        pool->pool_mode == POOL_MODE_STATEMENT);
}

/* Fails the client if sql touches sluice's names; true then. */
static bool refuse_own_names(struct client *c, const char *sql, size_t len)
{
	if (!prepared_sql_touches_names(sql, len, OWN_PREFIX))
		return false;
	client_fail(c, SQLSTATE_INSUFFICIENT_PRIVILEGE,
	            "prepared statement names starting with \"" OWN_PREFIX
	            "\" are reserved for the pooler");
	return true;
}

/* Parse, Describe and Close are held whole up to PREP_MAX_MESSAGE; past
 * it only their start is looked at (an unnamed Parse or a portal passes,
 * a statement name fails the client). */
static size_t held_whole(size_t whole, size_t prefix)
{
	return whole <= PREP_MAX_MESSAGE ? whole : prefix;
}

size_t prepared_wanted(const struct client *c, uint8_t type, size_t whole)
{
	if (!prepared_active(c))
		return 0;
	switch (type) {
	case PG_MSG_PARSE:
		return held_whole(whole, PG_HEADER_LEN + 1);
	case PG_MSG_DESCRIBE:
	case PG_MSG_CLOSE:
		return held_whole(whole, PG_HEADER_LEN + 2);
	case PG_MSG_BIND:
		return whole < BIND_PREFIX ? whole : BIND_PREFIX;
	case PG_MSG_QUERY:
		/* Looked at in what has arrived: never wait for a Query's text,
		 * which may be long or, from a bad client, never come. */
		return 0;
	default:
		return 0;
	}
}

/* The client's statement a Parse, Bind or Describe (avail bytes of msg)
 * names, or NULL. */
static struct prep_stmt *statement_named(const struct client *c,
                                         const uint8_t *msg, size_t avail)
{
	struct codec_reader r;
	const char *name;

	codec_reader_init(&r, msg + PG_HEADER_LEN, avail - PG_HEADER_LEN);
	if (msg[0] == PG_MSG_PARSE)
		name = codec_get_str(&r);
	else if (msg[0] == PG_MSG_BIND)
		name = codec_get_str(&r) ? codec_get_str(&r) : NULL;
	else if (msg[0] == PG_MSG_DESCRIBE && codec_get_u8(&r) == 'S')
		name = codec_get_str(&r);
	else
		return NULL;
	return name && *name ? client_lookup(c, name) : NULL;
}

/*
 * A Parse of the statement went in an earlier batch and is not answered
 * yet: that batch may fail before it and skip it. sluice's own Parse is
 * not sent again with every later batch (a few bytes of Bind+Sync would
 * queue the whole text each time): a Bind or Describe waits for the answer.
 * So does a duplicate Parse of the name, which sends its text under
 * sluice's name to get PostgreSQL's error: had the first been skipped, the
 * server would prepare the wrong text under that name. Not once a Query
 * went inside an extended batch: PostgreSQL skips it if the batch fails,
 * sluice's count of answers to come is then too high, and the wait might
 * never end; the statement is sent again instead (ensure_prepared).
 */
bool prepared_must_wait(struct client *c, const uint8_t *msg, size_t avail)
{
	struct server *s = c->server;
	struct prep_stmt *st = statement_named(c, msg, avail);
	struct prep_entry *e = st ? server_find(s, st) : NULL;

	if (!e || !unanswered_before(s, e) || s->prep.uncounted ||
	    (!e->ours && msg[0] != PG_MSG_PARSE))
		return false;
	s->prep.stalled = true;
	return true;
}

/* A named Parse the client already used: PostgreSQL's own error, raised
 * for the server's name and renamed on its way back. */
static size_t duplicate_parse(struct server *s, struct prep_stmt *existing,
                              const char *name, const char *query,
                              const uint8_t *types, uint32_t types_len)
{
	struct prep_stmt fake = *existing;
	char *rename_to = strdup(name);

	if (!rename_to || !ensure_prepared(s, existing) ||
	    pending_push(&s->prep, PG_MSG_PARSE, false, NULL, NULL) < 0) {
		free(rename_to);
		return 0;
	}
	fake.query = (char *)query;
	fake.types = (uint8_t *)types;
	fake.types_len = types_len;
	queue_parse(s, &fake);
	free(s->prep.rename_to);
	s->prep.rename_to = rename_to;
	snprintf(s->prep.rename_from, sizeof(s->prep.rename_from), "%s",
	         existing->name);
	return 1;
}

/* A new named Parse: the name now means st, prepared on s with the client
 * waiting for the answer. Fails the client if memory runs out (its Parse
 * must never reach a server under its own name). */
static size_t new_name(struct client *c, struct server *s, const char *name,
                       const char *query, const uint8_t *types,
                       uint32_t types_len)
{
	struct prep_stmt *st;
	struct prep_entry *e;

	if (client_refuses(c, name, query, types_len))
		return 1;
	st = stmt_get(c->pool, query, types, types_len);
	if (!st || client_add(c, name, st) < 0) {
		if (st && st->refs == 0)
			stmt_unref(c->conn.ctx, st);
		client_fail(c, SQLSTATE_OUT_OF_MEMORY, "out of memory");
		return 1;
	}
	/* Already there: the client still waits for its ParseComplete. */
	e = server_find(s, st);
	if (e && pending_push(&s->prep, PG_MSG_CLOSE, true, NULL, NULL) < 0) {
		client_fail(c, SQLSTATE_OUT_OF_MEMORY, "out of memory");
		return 1;
	}
	if (e) {
		queue_close(s, st->name);
		server_forget(s, e);
	}
	if (!prepare_on(s, st, name))
		client_fail(c, SQLSTATE_OUT_OF_MEMORY, "out of memory");
	return 1;
}

static size_t forward_parse(struct client *c, struct server *s,
                            const uint8_t *body, size_t avail, size_t len)
{
	struct codec_reader r;
	const char *name, *query;
	struct prep_stmt *st;

	codec_reader_init(&r, body, avail);
	name = codec_get_str(&r);
	if (name && *name && avail < len) {
		client_fail(c, SQLSTATE_PROGRAM_LIMIT,
		            "prepared statement too long: sluice holds at most %d "
		            "bytes of a Parse", PREP_MAX_MESSAGE);
		return 1;
	}
	query = codec_get_str(&r);
	if (query && refuse_own_names(c, query, strlen(query)))
		return 1;
	if (!name || !query || !*name) {
		/* unnamed (or malformed: the server says so) */
		if (pending_push(&s->prep, PG_MSG_PARSE, false, NULL, NULL) < 0)
			client_fail(c, SQLSTATE_OUT_OF_MEMORY, "out of memory");
		return 0;
	}
	count_client_parse(c->pool);
	st = client_lookup(c, name);
	if (st)
		return duplicate_parse(s, st, name, query, r.p + r.pos,
		                       (uint32_t)(len - r.pos));
	return new_name(c, s, name, query, r.p + r.pos, (uint32_t)(len - r.pos));
}

/* A Describe or Close naming a statement must be whole: its name is
 * replaced. True if the client was failed. */
static bool name_too_long(struct client *c, uint8_t what, size_t avail,
                          size_t len)
{
	if (what != 'S' || avail >= len)
		return false;
	client_fail(c, SQLSTATE_PROGRAM_LIMIT, "prepared statement name too long");
	return true;
}

static size_t forward_bind(struct client *c, struct server *s,
                           const uint8_t *msg, size_t avail, size_t whole)
{
	struct codec_reader r;
	const char *portal, *name;
	struct prep_stmt *st;
	struct msgbuf mb;

	codec_reader_init(&r, msg + PG_HEADER_LEN, avail - PG_HEADER_LEN);
	portal = codec_get_str(&r);
	name = codec_get_str(&r);
	if (!portal || !name || !*name || !(st = client_lookup(c, name)) ||
	    !ensure_prepared(s, st))
		return 0;
	msgbuf_init(&mb);
	msgbuf_put_u8(&mb, PG_MSG_BIND);
	msgbuf_put_u32(&mb, (uint32_t)(whole - 1 - strlen(name) + strlen(st->name)));
	msgbuf_put_str(&mb, portal);
	msgbuf_put_str(&mb, st->name);
	conn_queue_msgbuf(&s->conn, &mb);
	msgbuf_free(&mb);
	stats_prepared(c->pool, STATS_BIND);
	return PG_HEADER_LEN + r.pos;
}

static size_t forward_describe(struct client *c, struct server *s,
                               const uint8_t *body, size_t avail, size_t len)
{
	struct codec_reader r;
	struct prep_stmt *st;
	uint8_t what;
	const char *name;
	struct msgbuf mb;

	codec_reader_init(&r, body, avail);
	what = codec_get_u8(&r);
	if (name_too_long(c, what, avail, len))
		return 1;
	name = codec_get_str(&r);
	if (what != 'S' || !name || !*name || !(st = client_lookup(c, name)) ||
	    !ensure_prepared(s, st))
		return 0;
	msgbuf_init(&mb);
	msgbuf_begin(&mb, PG_MSG_DESCRIBE);
	msgbuf_put_u8(&mb, 'S');
	msgbuf_put_str(&mb, st->name);
	msgbuf_end(&mb);
	conn_queue_msgbuf(&s->conn, &mb);
	msgbuf_free(&mb);
	return 1;
}

/* The client's Close of a statement is answered by a Close of a name no
 * server has: the CloseComplete comes back in its place. */
static size_t forward_close(struct client *c, struct server *s,
                            const uint8_t *body, size_t avail, size_t len)
{
	struct codec_reader r;
	uint8_t what;
	const char *name;

	codec_reader_init(&r, body, avail);
	what = codec_get_u8(&r);
	if (name_too_long(c, what, avail, len))
		return 1;
	name = codec_get_str(&r);
	if (pending_push(&s->prep, PG_MSG_CLOSE, false, NULL, NULL) < 0) {
		client_fail(c, SQLSTATE_OUT_OF_MEMORY, "out of memory");
		return 1;
	}
	if (what != 'S' || !name || !*name)
		return 0;
	client_remove(c, name, NULL);
	queue_close(s, NO_SUCH_STATEMENT);
	return 1;
}

size_t prepared_forward(struct client *c, const uint8_t *msg, size_t avail,
                        size_t whole)
{
	struct server *s = c->server;
	const uint8_t *body = msg + PG_HEADER_LEN;
	size_t body_avail = avail - PG_HEADER_LEN;
	size_t body_len = whole - PG_HEADER_LEN;
	size_t done = 0;

	switch (msg[0]) {
	case PG_MSG_PARSE:
		done = forward_parse(c, s, body, body_avail, body_len);
		break;
	case PG_MSG_BIND:
		return forward_bind(c, s, msg, avail, whole);
	case PG_MSG_DESCRIBE:
		done = forward_describe(c, s, body, body_avail, body_len);
		break;
	case PG_MSG_CLOSE:
		done = forward_close(c, s, body, body_avail, body_len);
		break;
	case PG_MSG_QUERY:
		s->prep.uncounted |= c->batch_open;
		refuse_own_names(c, (const char *)body, body_avail);
		return 0;
	case PG_MSG_FUNCTION_CALL:
		s->prep.uncounted |= c->batch_open;
		return 0;
	default:
		return 0;
	}
	return done ? avail : 0;
}

/* --- the server's answers --------------------------------------------- */

bool prepared_wants_response(const struct server *s, uint8_t type)
{
	const struct prep_server *ps = &s->prep;

	switch (type) {
	case PG_MSG_ERROR:
		return ps->rename_to != NULL || ps->recent_next > 0 || ps->count > 0;
	case '1':
	case '3':
		return ps->pending_len > 0;
	case PG_MSG_COMMAND_COMPLETE:
		/* DEALLOCATE ALL or DISCARD ALL would drop something */
		return ps->count > 0 ||
		       (s->client && s->client->prep && s->client->prep->count > 0);
	default:
		return false;
	}
}

/* The client's name for a server statement in an error, or NULL. */
static const char *client_name_for(const struct server *s, const char *message,
                                   const char *sqlstate)
{
	const struct prep_server *ps = &s->prep;
	char quoted[64];

	if (ps->rename_to && strcmp(sqlstate, "42P05") == 0) {
		snprintf(quoted, sizeof(quoted), "\"%s\"", ps->rename_from);
		return strstr(message, quoted) ? ps->rename_to : NULL;
	}
	for (uint32_t i = 0; i < 4 && strcmp(sqlstate, "26000") == 0; i++) {
		snprintf(quoted, sizeof(quoted), "\"%s\"", ps->recent[i].server_name);
		if (ps->recent[i].server_name[0] && strstr(message, quoted))
			return ps->recent[i].name;
	}
	return NULL;
}

/* The client's name for st, or NULL. O(names): only on an error. */
static const char *name_of(const struct client *c, const struct prep_stmt *st)
{
	const struct prep_client *pc = c ? c->prep : NULL;

	for (size_t i = 0; pc && i < pc->nbuckets; i++)
		for (const struct prep_name *pn = pc->buckets[i]; pn; pn = pn->next)
			if (pn->stmt == st)
				return pn->name;
	return NULL;
}

/*
 * PostgreSQL says one of sluice's statements does not exist on s although
 * sluice prepared it there: SQL dropped it behind sluice's back (dynamic
 * SQL in a function, say). Forgotten, so the next use prepares it again.
 * Returns the client's name for it, or NULL.
 */
static const char *forget_lost(struct server *s, const struct pg_error_fields *err)
{
	const char *name;
	char quoted[64];

	if (strcmp(err->sqlstate, "26000") != 0)
		return NULL;
	for (struct prep_entry *e = s->prep.lru; e; e = e->next) {
		snprintf(quoted, sizeof(quoted), "\"%s\"", e->stmt->name);
		if (!e->confirmed || !strstr(err->message, quoted))
			continue;
		log_warn(&s->conn, "prepared statement %s was dropped on the "
		         "server behind sluice's back", e->stmt->name);
		name = name_of(s->client, e->stmt); /* its name holds e->stmt */
		server_forget(s, e);
		return name;
	}
	return NULL;
}

/* PostgreSQL's duplicate and does-not-exist errors, with the client's name
 * in them instead of sluice's. */
static bool rename_error(struct server *s, const uint8_t *msg, size_t len)
{
	struct pg_error_fields err;
	const char *name, *lost;
	char text[256];
	struct msgbuf mb;

	if (codec_parse_error(msg + PG_HEADER_LEN, len - PG_HEADER_LEN, &err) != CODEC_OK)
		return false;
	lost = forget_lost(s, &err);
	if (!(name = client_name_for(s, err.message, err.sqlstate)) && !(name = lost))
		return false;
	snprintf(text, sizeof(text), strcmp(err.sqlstate, "42P05") == 0 ?
	         "prepared statement \"%s\" already exists" :
	         "prepared statement \"%s\" does not exist", name);
	msgbuf_init(&mb);
	codec_put_error(&mb, "ERROR", err.sqlstate, text);
	if (!mb.failed)
		client_send(s->client, mb.data, mb.len);
	msgbuf_free(&mb);
	free(s->prep.rename_to);
	s->prep.rename_to = NULL;
	return true;
}

/* The client's names, but for those whose Parse is still unanswered. */
static void forget_client_names(struct client *c, const struct prep_server *ps)
{
	struct prep_client *pc = c->prep;

	for (size_t i = 0; pc && i < pc->nbuckets; i++) {
		struct prep_name **link = &pc->buckets[i];

		while (*link) {
			struct prep_name *pn = *link;

			if (pending_names(ps, pn->name, pn->stmt)) {
				link = &pn->next;
				continue;
			}
			*link = pn->next;
			pc->count--;
			pc->bytes -= name_cost(pn->name, pn->stmt);
			stmt_unref(c->conn.ctx, pn->stmt);
			free(pn);
		}
	}
}

/*
 * A CommandComplete: DEALLOCATE ALL and DISCARD ALL drop the session's
 * statements, so the server has none of sluice's left and the client none
 * of its names, as in PostgreSQL. Answers come in order: what is still
 * unanswered was sent after it and stays.
 */
static void command_complete(struct server *s, const uint8_t *msg, size_t len)
{
	const char *tag = (const char *)msg + PG_HEADER_LEN;
	size_t tag_len = len - PG_HEADER_LEN;
	struct prep_entry *next;

	if (!((tag_len == sizeof("DEALLOCATE ALL") &&
	       memcmp(tag, "DEALLOCATE ALL", tag_len) == 0) ||
	      (tag_len == sizeof("DISCARD ALL") &&
	       memcmp(tag, "DISCARD ALL", tag_len) == 0)))
		return;
	for (struct prep_entry *e = s->prep.lru; e; e = next) {
		next = e->next;
		if (e->confirmed)
			server_forget(s, e);
	}
	if (s->client)
		forget_client_names(s->client, &s->prep);
}

bool prepared_response(struct server *s, const uint8_t *msg, size_t len)
{
	struct prep_pending *p = pending_front(&s->prep);
	uint8_t expect = msg[0] == '1' ? PG_MSG_PARSE : PG_MSG_CLOSE;
	bool swallow;

	if (msg[0] == PG_MSG_ERROR)
		return rename_error(s, msg, len);
	if (msg[0] == PG_MSG_COMMAND_COMPLETE) {
		command_complete(s, msg, len);
		return false;
	}
	if (!p || p->kind != expect) {
		log_warn(&s->conn, "unexpected %s from server",
		         msg[0] == '1' ? "ParseComplete" : "CloseComplete");
		return false;
	}
	swallow = p->swallow;
	if (p->stmt) {
		struct prep_entry *e = server_find(s, p->stmt);

		p->stmt->valid = true;
		if (e && e->parse_id == p->parse_id)
			e->confirmed = true;
	}
	pending_pop(s);
	wake_client(s);
	return swallow;
}

/* --- answers without a server ----------------------------------------- */

static void reply(struct client *c, uint8_t type, const void *body, size_t len)
{
	struct msgbuf mb;

	msgbuf_init(&mb);
	msgbuf_begin(&mb, type);
	msgbuf_put_bytes(&mb, body, len);
	msgbuf_end(&mb);
	conn_queue_msgbuf(&c->conn, &mb);
	msgbuf_free(&mb);
}

/* A named Parse of a statement some server has accepted before: the client
 * gets its ParseComplete at once, without taking a server. Besides saving
 * a round trip, this keeps a client that prepares while others hold every
 * server (pgbench -M prepared does, synchronously) from waiting on them. */
static size_t local_parse(struct client *c, const uint8_t *body, size_t len)
{
	struct codec_reader r;
	const char *name, *query;
	struct prep_stmt *st;
	uint32_t types_len;

	codec_reader_init(&r, body, len);
	name = codec_get_str(&r);
	query = codec_get_str(&r);
	if (!name || !query || !*name || client_lookup(c, name) ||
	    !c->pool->prep_id)
		return 0;
	types_len = (uint32_t)(len - r.pos);
	/* Only what a server of this very pool accepted: a client must not
	 * learn what is valid in a database it cannot use. */
	st = stmt_find(c->conn.ctx->prepared, c->pool->prep_id, query,
	               r.p + r.pos, types_len);
	if (!st || !st->valid)
		return 0;
	if (client_refuses(c, name, query, types_len))
		return 1;
	if (client_add(c, name, st) < 0)
		return 0;
	count_client_parse(c->pool);
	reply(c, '1', NULL, 0);
	return 1;
}

size_t prepared_local(struct client *c, const uint8_t *msg, size_t whole)
{
	const uint8_t *body = msg + PG_HEADER_LEN;
	size_t len = whole - PG_HEADER_LEN;
	struct codec_reader r;
	char status = 'I';
	uint8_t what;
	const char *name;

	switch (msg[0]) {
	case PG_MSG_PARSE:
		if (!local_parse(c, body, len))
			return 0;
		break;
	case PG_MSG_CLOSE:
		codec_reader_init(&r, body, len);
		what = codec_get_u8(&r);
		name = codec_get_str(&r);
		if (what != 'S' || !name || !*name)
			return 0;
		client_remove(c, name, NULL);
		reply(c, '3', NULL, 0);
		break;
	case PG_MSG_FLUSH:
		if (!c->local_batch)
			return 0;
		break;
	case PG_MSG_SYNC:
		if (!c->local_batch)
			return 0;
		/* No server, so no transaction: the client is idle. */
		reply(c, PG_MSG_READY_FOR_QUERY, &status, 1);
		c->local_batch = false;
		return whole;
	default:
		return 0;
	}
	c->local_batch = true;
	return whole;
}

/* --- the console ------------------------------------------------------ */

void prepared_show_stats(struct sluice *ctx, struct msgbuf *mb)
{
	static const char *const cols[] = {
		"database", "user", "client_parses", "server_parses",
		"server_statements", "distinct_statements",
	};
	struct prep_registry *reg = ctx->prepared;

	codec_put_row_description(mb, cols, sizeof(cols) / sizeof(cols[0]));
	for (struct list *l = ctx->pools.next; l != &ctx->pools; l = l->next) {
		const struct pool *pool = LIST_ENTRY(l, const struct pool, node);
		char num[4][24];
		uint64_t held = 0;

		for (const struct list *s = pool->used.next; s != &pool->used; s = s->next)
			held += LIST_ENTRY(s, const struct server, node)->prep.count;
		for (const struct list *s = pool->idle.next; s != &pool->idle; s = s->next)
			held += LIST_ENTRY(s, const struct server, node)->prep.count;
		snprintf(num[0], 24, "%llu", (unsigned long long)pool->client_parses);
		snprintf(num[1], 24, "%llu", (unsigned long long)pool->server_parses);
		snprintf(num[2], 24, "%llu", (unsigned long long)held);
		snprintf(num[3], 24, "%zu", reg ? reg->count : (size_t)0);
		const char *vals[] = {
			pool->db_name, pool->user_name, num[0], num[1], num[2], num[3],
		};
		codec_put_data_row(mb, vals, sizeof(vals) / sizeof(vals[0]));
	}
	codec_put_command_complete(mb, "SHOW");
}
