/*
 * fuzz_userlist.c - the auth_file reader (PgBouncer's userlist.txt).
 *
 * Input: the content of an auth_file, written to a scratch file and read
 * with userlist_load.
 *
 * Invariants: a file read whole gives entries with a non-empty name, no
 * more entries than lines, and written back in the canonical form (each
 * field double-quoted, quotes doubled) it reads back to the same entries;
 * a refused file gives no list and a message that starts with the path.
 */
#include "fuzz.h"

#include "config.h"
#include "userlist.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_scratch_init();
	return 0;
}

/* "s" with each quote doubled, onto out; returns the new end. */
static char *put_quoted(char *out, const char *s)
{
	*out++ = '"';
	for (; *s; s++) {
		if (*s == '"')
			*out++ = '"';
		*out++ = *s;
	}
	*out++ = '"';
	return out;
}

/* The entries as an auth_file in canonical form, malloc'd; *len set. */
static char *write_back(const struct auth_entry *list, size_t *len)
{
	size_t size = 1;
	char *text, *p;

	for (const struct auth_entry *e = list; e; e = e->next)
		size += 2 * (strlen(e->name) + strlen(e->secret)) + 6;
	text = p = malloc(size);
	FUZZ_ASSERT(text != NULL);
	for (const struct auth_entry *e = list; e; e = e->next) {
		p = put_quoted(p, e->name);
		*p++ = ' ';
		p = put_quoted(p, e->secret);
		*p++ = '\n';
	}
	*len = (size_t)(p - text);
	return text;
}

static void check_read_back(const struct auth_entry *list)
{
	struct auth_entry *again = NULL;
	const struct auth_entry *a, *b;
	char path[128], err[256];
	size_t len;
	char *text = write_back(list, &len);

	fuzz_scratch_write("userlist-back.txt", (const uint8_t *)text, len,
	                   path, sizeof(path));
	FUZZ_ASSERT(userlist_load(path, &again, err, sizeof(err)) == 0);
	for (a = list, b = again; a && b; a = a->next, b = b->next)
		FUZZ_ASSERT(strcmp(a->name, b->name) == 0 &&
		            strcmp(a->secret, b->secret) == 0);
	FUZZ_ASSERT(a == NULL && b == NULL);
	userlist_free(again);
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct auth_entry *list = (struct auth_entry *)1;
	char path[128], err[256];
	size_t lines = 1, entries = 0;
	int rc;

	fuzz_scratch_write("userlist.txt", data, size, path, sizeof(path));
	rc = userlist_load(path, &list, err, sizeof(err));
	if (rc < 0) {
		FUZZ_ASSERT(list == NULL);
		FUZZ_ASSERT(strncmp(err, path, strlen(path)) == 0 &&
		            err[strlen(path)] == ':');
		return 0;
	}
	FUZZ_ASSERT(rc == 0);
	for (size_t i = 0; i < size; i++)
		lines += data[i] == '\n';
	for (const struct auth_entry *e = list; e; e = e->next) {
		FUZZ_ASSERT(e->name && e->name[0] != '\0' && e->secret);
		entries++;
	}
	FUZZ_ASSERT(entries <= lines);
	check_read_back(list);
	userlist_free(list);
	return 0;
}
