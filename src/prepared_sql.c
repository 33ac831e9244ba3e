/*
 * prepared_sql.c - what the text of a Query or Parse says to the
 * prepared-statement layer: whether it drops every prepared statement
 * (DISCARD ALL, DEALLOCATE ALL) or touches sluice's own statement names.
 *
 * Pure functions on untrusted text, no state: fuzzed by fuzz_prepared_sql.
 */
#include <string.h>
#include <strings.h>

#include "prepared_sql.h"

static bool is_ident_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') || ch == '_' || ch == '$' ||
	       (unsigned char)ch >= 0x80;
}

/* Length of word (case-insensitively) at sql + i, if a whole word is there;
 * else 0. */
static size_t word_at(const char *sql, size_t len, size_t i, const char *word)
{
	size_t n = strlen(word);

	if (len - i < n || strncasecmp(sql + i, word, n) != 0 ||
	    (i + n < len && is_ident_char(sql[i + n])))
		return 0;
	return n;
}

/* Past blanks, double quotes, parentheses and comments from i. */
static size_t skip_filler(const char *sql, size_t len, size_t i)
{
	while (i < len) {
		if (strchr(" \t\n\r\f\"(", sql[i]) && sql[i]) {
			i++;
		} else if (sql[i] == '-' && i + 1 < len && sql[i + 1] == '-') {
			while (i < len && sql[i] != '\n')
				i++;
		} else if (sql[i] == '/' && i + 1 < len && sql[i + 1] == '*') {
			size_t end = i + 3; /* the closing star-slash, after "/" "*" */

			while (end < len && !(sql[end - 1] == '*' && sql[end] == '/'))
				end++;
			i = end < len ? end + 1 : len;
		} else {
			break;
		}
	}
	return i;
}

bool prepared_sql_touches_names(const char *sql, size_t len,
                                const char *prefix)
{
	size_t plen = strlen(prefix);

	static const char *const verbs[] = { "prepare", "execute", "deallocate" };

	for (size_t i = 0; i < len; i++) {
		char ch = sql[i] | 0x20;

		if ((ch != 'p' && ch != 'e' && ch != 'd') ||
		    (i > 0 && is_ident_char(sql[i - 1])))
			continue;
		for (size_t v = 0; v < sizeof(verbs) / sizeof(verbs[0]); v++) {
			size_t n = word_at(sql, len, i, verbs[v]);
			size_t j = n ? skip_filler(sql, len, i + n) : len;

			if (len - j >= plen && strncasecmp(sql + j, prefix, plen) == 0)
				return true;
		}
	}
	return false;
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
