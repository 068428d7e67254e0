/* tty.h - reading a secret a person types: one line of input, or a prompt
 * on the terminal with echo off. Used by zmesh (login, passwd) and
 * zmeshd admin set-password. */
#pragma once

#include <stddef.h>

/* One line of fd into buf, without its newline (nor a CR before it): 0,
 * -ENODATA on end of input before anything, -E2BIG when it does not fit,
 * -EINTR on a signal, -errno of read(). */
int tty_read_line(int fd, char *buf, size_t size);

/* question on stderr, then one line of stdin (a terminal) with echo off.
 * SIGINT, SIGTERM and SIGHUP interrupt the read (-EINTR) instead of ending
 * the process, so that the terminal always gets its echo back. Returns as
 * tty_read_line, or -errno of the terminal's settings. */
int tty_prompt_hidden(const char *question, char *buf, size_t size);
