/*
 * failrealloc.c - fault injection for integration tests: an LD_PRELOAD
 * shim whose realloc fails (NULL, ENOMEM) for one size, the one in
 * SLUICE_FAILREALLOC_SIZE, and works as usual for every other size.
 *
 * sluice grows its output buffer by doubling from 4 KiB, so a power of
 * two there makes the growth fail when a pass queues that much for one
 * connection, which no other allocation in a test is likely to ask for.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>

void *realloc(void *ptr, size_t size)
{
	static void *(*next)(void *, size_t);
	/* Read each time: the first calls may come before the environment
	 * is set up (sanitizer runtimes allocate that early). */
	const char *env = getenv("SLUICE_FAILREALLOC_SIZE");

	if (env && size == strtoull(env, NULL, 10)) {
		errno = ENOMEM;
		return NULL;
	}
	if (!next)
		next = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
	return next(ptr, size);
}
