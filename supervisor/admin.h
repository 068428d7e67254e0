/* admin.h - zmeshd's operator commands, run on the host as root beside a
 * running zmeshd (same settings: --state-dir, ZMESH_STATE_DIR, DATABASE_URL):
 *
 *   zmeshd admin set-password EMAIL [--state-dir DIR]
 *
 * sets a user's password, read from stdin (asked for, without echo, on a
 * terminal) and held to the rule of every password (val_password), and ends
 * the user's sessions. It reaches the control plane as zmeshd does: the
 * embedded cluster's superuser over its unix socket (peer authentication of
 * root), or DATABASE_URL. It never starts the embedded cluster: when none
 * runs it says so and fails, so that it cannot race a zmeshd starting it. */
#pragma once

/* argv[0] is the program, argv[1] "admin". Prints its outcome; returns the
 * exit status (0 done, 1 failed, 2 bad usage). */
int admin_main(int argc, char **argv);
