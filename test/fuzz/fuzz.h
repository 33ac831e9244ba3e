/*
 * fuzz.h - what the libFuzzer targets of test/fuzz/ share: an invariant
 * check that aborts (libFuzzer then keeps the input as a crash), span
 * checks for pointers a parser hands back, and a scratch directory for
 * the readers that take a path, removed at exit and on a crash.
 */
#ifndef SLUICE_FUZZ_H
#define SLUICE_FUZZ_H

#include <fcntl.h>
#include <sanitizer/common_interface_defs.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The scratch directory of this process, made by fuzz_scratch_init(). */
static char fuzz_scratch_dir[64];

/* Removes the scratch directory and the files written into it. */
static inline void fuzz_scratch_cleanup(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fuzz_scratch_dir);
	if (fuzz_scratch_dir[0] && system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", fuzz_scratch_dir);
	fuzz_scratch_dir[0] = '\0';
}

/* Aborts with the broken invariant's text; libFuzzer reports a crash. */
static inline void fuzz_check(bool ok, const char *what, const char *file,
                              int line)
{
	if (ok)
		return;
	fprintf(stderr, "%s:%d: invariant broken: %s\n", file, line, what);
	fuzz_scratch_cleanup();
	abort();
}

#define FUZZ_ASSERT(cond) fuzz_check((cond), #cond, __FILE__, __LINE__)

/* True if the NUL-terminated string s lies, terminator included, inside
 * the span [base, base + len). */
static inline bool fuzz_str_within(const char *s, const uint8_t *base,
                                   size_t len)
{
	const uint8_t *p = (const uint8_t *)s;

	if (p < base || p >= base + len)
		return false;
	return memchr(p, 0, len - (size_t)(p - base)) != NULL;
}

/* Makes a private directory (in /dev/shm if it can, for speed) for the
 * files that readers taking a path are given; removed at exit, on a
 * broken invariant and on a sanitizer's report. */
static inline void fuzz_scratch_init(void)
{
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";

	snprintf(fuzz_scratch_dir, sizeof(fuzz_scratch_dir),
	         "%s/sluice-fuzz-XXXXXX", base);
	FUZZ_ASSERT(mkdtemp(fuzz_scratch_dir) != NULL);
	atexit(fuzz_scratch_cleanup);
	__sanitizer_set_death_callback(fuzz_scratch_cleanup);
}

/* Replaces the content of file name in the scratch directory with data;
 * writes its absolute path into path (size bytes) and returns path. */
static inline const char *fuzz_scratch_write(const char *name,
                                             const uint8_t *data, size_t len,
                                             char *path, size_t size)
{
	int fd;

	snprintf(path, size, "%s/%s", fuzz_scratch_dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	FUZZ_ASSERT(fd >= 0);
	FUZZ_ASSERT(len == 0 || write(fd, data, len) == (ssize_t)len);
	close(fd);
	return path;
}

#endif
