/* cleanup.h - cleanup attributes and ownership hand-over, header-only: shared
 * by the sandbox library, zmeshd and the zmesh client (which includes it
 * without linking anything of the sandbox). */
#pragma once

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f)    __attribute__((cleanup(f)))
#define _cleanup_free_  _cleanup_(util_freep)
#define _cleanup_close_ _cleanup_(util_closep)
#define _printf_(a, b)  __attribute__((format(printf, a, b)))
#define ELEMENTSOF(x)   (sizeof(x) / sizeof((x)[0]))

/* Hand ownership on: the variable is reset so its cleanup does nothing. */
#define TAKE_PTR(p)                     \
	({                              \
		__typeof__(p) _p = (p); \
		(p) = NULL;             \
		_p;                     \
	})
#define TAKE_FD(fd)             \
	({                      \
		int _fd = (fd); \
		(fd) = -1;      \
		_fd;            \
	})

static inline void util_freep(void *p)
{
	free(*(void **)p);
}
static inline void util_closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}
