/* logs_follow.h - zmesh logs NAME --follow (logs_follow.c). */
#pragma once

#include "cli.h"

/* Follow the live logs at path (".../logs/stream") until Ctrl-C or the
 * server ends the stream for good; returns the exit status. */
int logs_follow(struct cli *c, const char *path);
