/*
 * prepared.c - protocol-level named prepared statements in transaction and
 * statement mode (max_prepared_statements), as PgBouncer 1.21.
 *
 * Consecutive transactions of a client land on different servers, so a
 * statement it prepared on one is missing on the next. sluice keeps:
 *   - a registry of distinct statements (query text + parameter types), each
 *     with one server-side name, sluice_<id>, shared by every client;
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
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client.h"
#include "codec.h"
#include "config.h"
#include "log.h"
#include "pool.h"
#include "prepared.h"
#include "server.h"
#include "sluice.h"
#include "stats.h"

/* Bytes of a Bind needed to read its two names (NAMEDATALEN is 64). */
#define BIND_PREFIX (PG_HEADER_LEN + 2 * 64 + 64)
/* A name no statement has: Close of it is answered, and harmless. */
#define NO_SUCH_STATEMENT "sluice_closed"

struct prep_stmt {
	struct prep_stmt *next;    /* hash chain */
	uint64_t id;
	uint64_t hash;
	uint32_t refs;             /* client names and server sets holding it */
	bool valid;                /* a server has accepted its Parse once */
	char *query;
	uint8_t *types;            /* int16 count + int32 oids, as in Parse */
	uint32_t types_len;
	char name[32];             /* sluice_<id> */
};

struct prep_registry {
	struct prep_stmt **buckets;
	size_t nbuckets;
	size_t count;
	uint64_t next_id;
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
	size_t count;
};

/* A statement prepared on a server. */
struct prep_entry {
	struct prep_entry *prev;
	struct prep_entry *next;
	struct prep_stmt *stmt;
	bool confirmed;            /* its ParseComplete came back */
	bool ours;                 /* sluice's own Parse, not the client's */
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
	if (!ctx->prepared)
		ctx->prepared = calloc(1, sizeof(struct prep_registry));
	return ctx->prepared;
}

static uint64_t stmt_hash(const char *query, const uint8_t *types,
                          uint32_t types_len)
{
	return fnv(fnv(14695981039346656037ull, query, strlen(query) + 1),
	           types, types_len);
}

/* The statement for (query, types) if the registry has it. */
static struct prep_stmt *stmt_find(struct prep_registry *reg, uint64_t hash,
                                   const char *query, const uint8_t *types,
                                   uint32_t types_len)
{
	if (!reg || !reg->nbuckets)
		return NULL;
	for (struct prep_stmt *st = reg->buckets[hash % reg->nbuckets]; st; st = st->next)
		if (st->hash == hash && st->types_len == types_len &&
		    strcmp(st->query, query) == 0 &&
		    memcmp(st->types, types, types_len) == 0)
			return st;
	return NULL;
}

/* The statement for (query, types), made on first use; NULL on ENOMEM. */
static struct prep_stmt *stmt_get(struct sluice *ctx, const char *query,
                                  const uint8_t *types, uint32_t types_len)
{
	struct prep_registry *reg = registry_of(ctx);
	uint64_t hash = stmt_hash(query, types, types_len);
	struct prep_stmt *st;

	if (!reg || grow_buckets((void ***)&reg->buckets, &reg->nbuckets, reg->count,
	                         stmt_slot, stmt_next) < 0)
		return NULL;
	st = stmt_find(reg, hash, query, types, types_len);
	if (st)
		return st;
	st = calloc(1, sizeof(*st));
	if (!st || !(st->query = strdup(query)) ||
	    !(st->types = malloc(types_len ? types_len : 1))) {
		if (st)
			free(st->query);
		free(st);
		return NULL;
	}
	memcpy(st->types, types, types_len);
	st->types_len = types_len;
	st->hash = hash;
	st->id = ++reg->next_id;
	snprintf(st->name, sizeof(st->name), "sluice_%llu", (unsigned long long)st->id);
	st->next = reg->buckets[hash % reg->nbuckets];
	reg->buckets[hash % reg->nbuckets] = st;
	reg->count++;
	return st;
}

/* Drops a reference; the statement goes when nobody holds it. */
static void stmt_unref(struct sluice *ctx, struct prep_stmt *st)
{
	struct prep_registry *reg = ctx->prepared;

	if (--st->refs > 0)
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
	return 0;
}

static void client_remove(struct client *c, const char *name)
{
	struct prep_name **link;
	struct prep_name *pn;

	if (!c->prep || !c->prep->nbuckets)
		return;
	link = name_link(c->prep, name);
	if (!(pn = *link))
		return;
	*link = pn->next;
	stmt_unref(c->conn.ctx, pn->stmt);
	free(pn);
	c->prep->count--;
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
	stmt_unref(s->pool->ctx, e->stmt);
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

static int pending_push(struct prep_server *ps, uint8_t kind, bool swallow,
                        struct prep_stmt *st, const char *client_name)
{
	struct prep_pending *p;

	if (ps->pending_len == ps->pending_cap) {
		uint32_t cap = ps->pending_cap ? ps->pending_cap * 2 : 16;
		struct prep_pending *grown = malloc(cap * sizeof(*grown));

		if (!grown)
			return -1;
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
	p->client_name = client_name ? strdup(client_name) : NULL;
	p->sync_seq = ps->syncs_sent;
	return 0;
}

static struct prep_pending *pending_front(struct prep_server *ps)
{
	return ps->pending_len ? &ps->pending[ps->pending_head] : NULL;
}

static void pending_pop(struct prep_server *ps)
{
	free(ps->pending[ps->pending_head].client_name);
	ps->pending_head = (ps->pending_head + 1) % ps->pending_cap;
	ps->pending_len--;
}

static void remember_failed(struct server *s, const struct prep_stmt *st,
                             const char *client_name)
{
	struct prep_server *ps = &s->prep;
	uint32_t i = ps->recent_next++ % 4;

	ps->recent[i].id = st->id;
	snprintf(ps->recent[i].name, sizeof(ps->recent[i].name), "%s", client_name);
}

void prepared_sync_sent(struct server *s)
{
	s->prep.syncs_sent++;
}

void prepared_ready(struct server *s)
{
	struct prep_server *ps = &s->prep;
	struct prep_pending *p;

	ps->syncs_answered++;
	/* What a finished batch did not answer, it skipped after an error. */
	while ((p = pending_front(ps)) && p->sync_seq < ps->syncs_answered) {
		struct prep_entry *e = p->stmt ? server_find(s, p->stmt) : NULL;

		/* A Parse that failed prepared nothing, as in PostgreSQL; a Bind
		 * of it already on its way must hear the client's name. Noted
		 * first: forgetting may free the statement. */
		if (p->client_name && p->stmt)
			remember_failed(s, p->stmt, p->client_name);
		if (e)
			server_forget(s, e);
		if (p->client_name && s->client)
			client_remove(s->client, p->client_name);
		pending_pop(ps);
	}
	free(ps->rename_to);
	ps->rename_to = NULL;
}

void prepared_server_free(struct server *s)
{
	prepared_server_clear(s);
	while (s->prep.pending_len > 0)
		pending_pop(&s->prep);
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

/* Makes room (closing the least recently used) and prepares st on s;
 * client_name: the client's own Parse (its answer goes to the client),
 * NULL: sluice's (swallowed). False if memory ran out. */
static bool prepare_on(struct server *s, struct prep_stmt *st,
                       const char *client_name)
{
	bool swallow = client_name == NULL;
	struct prep_server *ps = &s->prep;
	struct prep_entry *e;
	int max = s->pool->ctx->config->max_prepared_statements;

	while (ps->count >= (uint32_t)max && ps->lru_tail) {
		queue_close(s, ps->lru_tail->stmt->name);
		if (pending_push(ps, PG_MSG_CLOSE, true, NULL, NULL) < 0)
			return false;
		server_forget(s, ps->lru_tail);
	}
	e = calloc(1, sizeof(*e));
	if (!e || pending_push(ps, PG_MSG_PARSE, swallow, st, client_name) < 0) {
		free(e);
		return false;
	}
	queue_parse(s, st);
	e->stmt = st;
	e->ours = swallow;
	e->parse_seq = ps->syncs_sent;
	st->refs++;
	lru_push_front(ps, e);
	ps->count++;
	s->pool->server_parses++;
	stats_prepared(s->pool, STATS_SERVER_PARSE);
	return true;
}

/* st prepared on s, preparing it now if needed (its answer swallowed). */
static bool ensure_prepared(struct server *s, struct prep_stmt *st)
{
	struct prep_entry *e = server_find(s, st);

	if (!e)
		return prepare_on(s, st, NULL);
	if (!e->confirmed && e->ours && e->parse_seq != s->prep.syncs_sent) {
		/* sluice's Parse went in an earlier batch that may yet fail and
		 * skip it: prepare again in this one (the Close makes that safe
		 * either way). A client's own Parse is not repeated: if it fails,
		 * PostgreSQL's "does not exist" is the right answer. */
		queue_close(s, st->name);
		queue_parse(s, st);
		if (pending_push(&s->prep, PG_MSG_CLOSE, true, NULL, NULL) < 0 ||
		    pending_push(&s->prep, PG_MSG_PARSE, true, st, NULL) < 0)
			return false;
		e->parse_seq = s->prep.syncs_sent;
	}
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

size_t prepared_wanted(const struct client *c, uint8_t type, size_t whole)
{
	if (!prepared_active(c))
		return 0;
	switch (type) {
	case PG_MSG_PARSE:
	case PG_MSG_DESCRIBE:
	case PG_MSG_CLOSE:
		return whole;
	case PG_MSG_BIND:
		return whole < BIND_PREFIX ? whole : BIND_PREFIX;
	case PG_MSG_QUERY:
		/* DISCARD ALL is looked for in what has arrived: never wait for
		 * a Query's text, which may be long or, from a bad client, never
		 * come. */
		return 0;
	default:
		return 0;
	}
}

/* A named Parse the client already used: PostgreSQL's own error, raised
 * for the server's name and renamed on its way back. */
static size_t duplicate_parse(struct client *c, struct server *s,
                              struct prep_stmt *existing, const char *name,
                              const char *query, const uint8_t *types,
                              uint32_t types_len)
{
	struct prep_stmt fake = *existing;

	if (!ensure_prepared(s, existing))
		return 0;
	fake.query = (char *)query;
	fake.types = (uint8_t *)types;
	fake.types_len = types_len;
	queue_parse(s, &fake);
	pending_push(&s->prep, PG_MSG_PARSE, false, NULL, NULL);
	free(s->prep.rename_to);
	s->prep.rename_to = strdup(name);
	s->prep.rename_id = existing->id;
	(void)c;
	return 1;
}

/* DEALLOCATE ALL or DISCARD ALL on its way: the server will have no
 * statement left, and the client none of its names. */
static void forget_all(struct client *c, struct server *s)
{
	prepared_client_free(c);
	prepared_server_clear(s);
}

static size_t forward_parse(struct client *c, struct server *s,
                            const uint8_t *body, size_t len)
{
	struct codec_reader r;
	const char *name, *query;
	struct prep_stmt *st;
	struct prep_entry *e;
	uint32_t types_len;

	codec_reader_init(&r, body, len);
	name = codec_get_str(&r);
	query = codec_get_str(&r);
	types_len = (uint32_t)(len - r.pos);
	if (!name || !query || !*name) {
		pending_push(&s->prep, PG_MSG_PARSE, false, NULL, NULL);
		if (query && prepared_drops_all(query, strlen(query)))
			forget_all(c, s);
		return 0; /* unnamed (or malformed: the server says so) */
	}
	count_client_parse(c->pool);
	st = client_lookup(c, name);
	if (st)
		return duplicate_parse(c, s, st, name, query, r.p + r.pos, types_len);
	st = stmt_get(c->conn.ctx, query, r.p + r.pos, types_len);
	if (!st || client_add(c, name, st) < 0)
		return 0;
	/* Already there: the client still waits for its ParseComplete. */
	e = server_find(s, st);
	if (e) {
		queue_close(s, st->name);
		pending_push(&s->prep, PG_MSG_CLOSE, true, NULL, NULL);
		server_forget(s, e);
	}
	return prepare_on(s, st, name) ? 1 : 0;
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
                               const uint8_t *body, size_t len)
{
	struct codec_reader r;
	struct prep_stmt *st;
	uint8_t what;
	const char *name;
	struct msgbuf mb;

	codec_reader_init(&r, body, len);
	what = codec_get_u8(&r);
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
                            const uint8_t *body, size_t len)
{
	struct codec_reader r;
	uint8_t what;
	const char *name;

	codec_reader_init(&r, body, len);
	what = codec_get_u8(&r);
	name = codec_get_str(&r);
	pending_push(&s->prep, PG_MSG_CLOSE, false, NULL, NULL);
	if (what != 'S' || !name || !*name)
		return 0;
	client_remove(c, name);
	queue_close(s, NO_SUCH_STATEMENT);
	return 1;
}

bool prepared_drops_all(const char *sql, size_t len)
{
	static const char *const forms[] = { "discard all", "deallocate all",
	                                     "deallocate prepare all" };
	char words[32];
	size_t n = 0;
	size_t start = 0;

	/* Every Query passes here: most are ruled out by their first letter. */
	while (start < len && (sql[start] == ' ' || sql[start] == '\t' ||
	                       sql[start] == '\n' || sql[start] == '\r'))
		start++;
	if (start == len || (sql[start] != 'd' && sql[start] != 'D'))
		return false;
	/* Lower-cased, runs of blanks as one space, first 31 bytes. */
	for (size_t i = start; i < len && sql[i] && n + 1 < sizeof(words); i++) {
		char ch = sql[i];

		if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r') {
			if (n > 0 && words[n - 1] != ' ')
				words[n++] = ' ';
			continue;
		}
		words[n++] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
	}
	words[n] = '\0';
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		size_t flen = strlen(forms[i]);

		if (strncmp(words, forms[i], flen) == 0 &&
		    (words[flen] == '\0' || words[flen] == ';' || words[flen] == ' '))
			return true;
	}
	return false;
}

size_t prepared_forward(struct client *c, const uint8_t *msg, size_t avail,
                        size_t whole)
{
	struct server *s = c->server;
	const uint8_t *body = msg + PG_HEADER_LEN;
	size_t body_len = whole - PG_HEADER_LEN;
	size_t done = 0;

	switch (msg[0]) {
	case PG_MSG_PARSE:
		done = forward_parse(c, s, body, body_len);
		break;
	case PG_MSG_BIND:
		return forward_bind(c, s, msg, avail, whole);
	case PG_MSG_DESCRIBE:
		done = forward_describe(c, s, body, body_len);
		break;
	case PG_MSG_CLOSE:
		done = forward_close(c, s, body, body_len);
		break;
	case PG_MSG_QUERY:
		if (prepared_drops_all((const char *)body, avail - PG_HEADER_LEN))
			forget_all(c, s);
		return 0;
	default:
		return 0;
	}
	return done ? whole : 0;
}

/* --- the server's answers --------------------------------------------- */

bool prepared_wants_response(const struct server *s, uint8_t type)
{
	if (type == PG_MSG_ERROR)
		return s->prep.rename_to != NULL || s->prep.recent_next > 0;
	return (type == '1' || type == '3') && s->prep.pending_len > 0;
}

/* The client's name for server statement id in an error, or NULL. */
static const char *client_name_for(const struct server *s, const char *message,
                                   const char *sqlstate)
{
	const struct prep_server *ps = &s->prep;
	char server_name[40];

	if (ps->rename_to && strcmp(sqlstate, "42P05") == 0) {
		snprintf(server_name, sizeof(server_name), "\"sluice_%llu\"",
		         (unsigned long long)ps->rename_id);
		return strstr(message, server_name) ? ps->rename_to : NULL;
	}
	for (uint32_t i = 0; i < 4 && strcmp(sqlstate, "26000") == 0; i++) {
		snprintf(server_name, sizeof(server_name), "\"sluice_%llu\"",
		         (unsigned long long)ps->recent[i].id);
		if (ps->recent[i].id && strstr(message, server_name))
			return ps->recent[i].name;
	}
	return NULL;
}

/* PostgreSQL's duplicate and does-not-exist errors, with the client's name
 * in them instead of sluice's. */
static bool rename_error(struct server *s, const uint8_t *msg, size_t len)
{
	struct pg_error_fields err;
	const char *name;
	char text[256];
	struct msgbuf mb;

	if (codec_parse_error(msg + PG_HEADER_LEN, len - PG_HEADER_LEN, &err) != CODEC_OK ||
	    !(name = client_name_for(s, err.message, err.sqlstate)))
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

bool prepared_response(struct server *s, const uint8_t *msg, size_t len)
{
	struct prep_pending *p = pending_front(&s->prep);
	uint8_t expect = msg[0] == '1' ? PG_MSG_PARSE : PG_MSG_CLOSE;
	bool swallow;

	if (msg[0] == PG_MSG_ERROR)
		return rename_error(s, msg, len);
	if (!p || p->kind != expect) {
		log_warn(&s->conn, "unexpected %s from server",
		         msg[0] == '1' ? "ParseComplete" : "CloseComplete");
		return false;
	}
	swallow = p->swallow;
	if (p->stmt) {
		struct prep_entry *e = server_find(s, p->stmt);

		p->stmt->valid = true;
		if (e)
			e->confirmed = true;
	}
	pending_pop(&s->prep);
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
	if (!name || !query || !*name || client_lookup(c, name))
		return 0;
	types_len = (uint32_t)(len - r.pos);
	st = stmt_find(c->conn.ctx->prepared, stmt_hash(query, r.p + r.pos, types_len),
	               query, r.p + r.pos, types_len);
	if (!st || !st->valid || client_add(c, name, st) < 0)
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
		client_remove(c, name);
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
