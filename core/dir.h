/*
 * dir.h -- directory helpers for start-up code (log and spool roots).
 */
#ifndef PT_DIR_H
#define PT_DIR_H

#include "core/pt.h"
#include <sys/types.h>

/* mkdir -p: create path and its missing parents with mode.  0 or -errno
 * (an existing directory is not an error).  Not durable: the spool, which
 * needs its directories to survive a crash, syncs parents itself. */
int pt_mkdir_p(const char *path, mode_t mode);

#endif
