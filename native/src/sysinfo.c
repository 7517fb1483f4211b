/* See sysinfo.h. */
#define _GNU_SOURCE
#include "sysinfo.h"

#include <stdio.h>
#include <unistd.h>

/* The unsigned number a file starts with; 0 when it is missing or starts
 * with anything else (cgroup v2 writes "max" for no limit). */
static unsigned long long read_number(const char *path, int *exists)
{
    unsigned long long value = 0;
    FILE *f = fopen(path, "re");
    if (exists)
        *exists = f != NULL;
    if (f) {
        if (fscanf(f, "%llu", &value) != 1)
            value = 0;
        fclose(f);
    }
    return value;
}

size_t sysinfo_usable_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    size_t memory = pages > 0 && page > 0 ? (size_t)pages * (size_t)page : 0;
    static const char *const limits[] = {"/sys/fs/cgroup/memory.max",              /* v2 */
                                         "/sys/fs/cgroup/memory/memory.limit_in_bytes"}; /* v1 */
    for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
        int exists = 0;
        unsigned long long limit = read_number(limits[i], &exists);
        if (!exists)
            continue;
        if (limit > 0 && (memory == 0 || limit < memory))
            memory = (size_t)limit;
        break;
    }
    return memory;
}

size_t sysinfo_rmem_max(void) { return (size_t)read_number("/proc/sys/net/core/rmem_max", NULL); }
