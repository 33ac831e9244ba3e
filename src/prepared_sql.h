/*
 * prepared_sql.h - what a statement's text says to the prepared-statement
 * layer. Pure functions on untrusted text.
 */
#ifndef SLUICE_PREPARED_SQL_H
#define SLUICE_PREPARED_SQL_H

#include <stdbool.h>
#include <stddef.h>

/* True if sql drops every prepared statement (DISCARD/DEALLOCATE ALL). */
bool prepared_drops_all(const char *sql, size_t len);

/*
 * True if sql PREPAREs, EXECUTEs or DEALLOCATEs a name starting with
 * prefix (case-insensitively): another client sharing the server could drop
 * one of sluice's statements and make its name run other SQL. Words inside
 * literals and comments count too, for a DO block's EXECUTE; SQL that
 * builds the name piece by piece is not caught (the names are random, and
 * their use is per pool).
 */
bool prepared_sql_touches_names(const char *sql, size_t len,
                                const char *prefix);

#endif
