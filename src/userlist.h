/*
 * userlist.h - reading an auth_file (PgBouncer's userlist.txt format).
 */
#ifndef SLUICE_USERLIST_H
#define SLUICE_USERLIST_H

#include <stddef.h>

#include "config.h"

/*
 * Reads path into a list of entries in file order. Returns 0 and sets *out
 * (the caller frees it with userlist_free; NULL for a file without users),
 * or -1 with "file:line: message" (or "file: message") written into err.
 */
int userlist_load(const char *path, struct auth_entry **out, char *err,
                  size_t errlen);

/* Frees list and its strings; NULL is fine. */
void userlist_free(struct auth_entry *list);

#endif
