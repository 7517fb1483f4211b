/* Private: facts about the system this process runs on, from sysconf and
 * /proc and /sys files.  Each call reads them afresh; callers read once. */
#ifndef S3DL_SYSINFO_H
#define S3DL_SYSINFO_H

#include <stddef.h>

/* Physical memory, or the process's cgroup memory limit when that is lower
 * (a container on a large host); 0 when neither can be read. */
size_t sysinfo_usable_memory(void);

/* net.core.rmem_max in bytes (the most SO_RCVBUF may ask for); 0 when it
 * cannot be read. */
size_t sysinfo_rmem_max(void);

#endif
