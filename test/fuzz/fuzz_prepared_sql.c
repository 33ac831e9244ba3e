/*
 * fuzz_prepared_sql.c - the text scanners of the prepared-statement layer
 * (prepared_sql.c), which read every Query and named Parse a client sends.
 *
 * Input: any bytes, taken as a statement's text (NULs included: the
 * scanners get a length, not a C string).
 *
 * Invariants: a text that drops every statement starts, after blanks, with
 * d or D; a verb on a line of its own followed by sluice's prefix is always
 * caught, whatever text (an open comment, a literal) comes before it; the
 * prefix match ignores case; a text without the prefix anywhere (in any
 * case) never touches sluice's names.
 */
#include "fuzz.h"

#include "prepared_sql.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PREFIX "sluice_"

static bool has_prefix_anywhere(const char *sql, size_t len)
{
	size_t n = strlen(PREFIX);

	for (size_t i = 0; i + n <= len; i++)
		if (strncasecmp(sql + i, PREFIX, n) == 0)
			return true;
	return false;
}

static void check_drops_all(const char *sql, size_t len)
{
	size_t i = 0;

	if (!prepared_drops_all(sql, len))
		return;
	while (i < len && strchr(" \t\n\r", sql[i]) && sql[i])
		i++;
	FUZZ_ASSERT(i < len && (sql[i] == 'd' || sql[i] == 'D'));
}

/* The text, then a line that deallocates one of sluice's statements. */
static void check_appended_verb(const char *sql, size_t len)
{
	static const char tail[] = "\nDEALLOCATE Sluice_0123";
	char *both = malloc(len + sizeof(tail));

	FUZZ_ASSERT(both != NULL);
	memcpy(both, sql, len);
	memcpy(both + len, tail, sizeof(tail) - 1);
	FUZZ_ASSERT(prepared_sql_touches_names(both, len + sizeof(tail) - 1,
	                                       PREFIX));
	free(both);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A copy of exactly size bytes, so ASan sees any read past the end. */
	char *sql = malloc(size ? size : 1);
	bool touches;

	FUZZ_ASSERT(sql != NULL);
	memcpy(sql, data, size);
	touches = prepared_sql_touches_names(sql, size, PREFIX);
	if (!has_prefix_anywhere(sql, size))
		FUZZ_ASSERT(!touches);
	check_drops_all(sql, size);
	check_appended_verb(sql, size);
	free(sql);
	return 0;
}
