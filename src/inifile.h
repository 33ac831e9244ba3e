/*
 * inifile.h - reading a pgbouncer.ini-style file as PgBouncer reads it.
 */
#ifndef SLUICE_INIFILE_H
#define SLUICE_INIFILE_H

#include <stddef.h>

/* One section header or one key = value, with where it was written. */
struct ini_entry {
	const char *file;    /* as given to inifile_read or to %include */
	unsigned line;       /* 1-based, in that file */
	const char *section; /* NULL before the first section header */
	const char *key;     /* NULL: this is the header of section */
	const char *value;   /* whole, trailing blanks cut; NULL for a header */
};

/*
 * Reads path and the files it %includes (nested up to 10 deep, relative
 * paths from the current directory, as PgBouncer), calling fn for each
 * section header and each key = value in file order. The strings of the
 * entry live only during the call. fn returns 0, or -1 after writing its
 * message into err, which the caller then finds prefixed with
 * "file:line: ". Returns 0, or -1 with "file:line: message" (or "file:
 * message" when path cannot be opened) in err.
 */
int inifile_read(const char *path,
                 int (*fn)(void *arg, const struct ini_entry *entry,
                           char *err, size_t errlen),
                 void *arg, char *err, size_t errlen);

#endif
