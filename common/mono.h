/* mono.h - deadlines on the monotonic clock, for condition variables set to
 * wait by it (pthread_condattr_setclock(CLOCK_MONOTONIC)): a step of the
 * wall clock neither stalls nor hurries a wait. */
#pragma once

#include <time.h>

/* ms from now. */
static inline struct timespec mono_deadline_in(unsigned ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}
