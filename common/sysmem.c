/* Memory limits: see sysmem.h. */
#include "common/sysmem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

uint64_t sysmem_physical(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size : 0;
}

/* The number in the first line of path (0 when absent, unreadable or "max"). */
static uint64_t read_limit(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[64];
    uint64_t v = 0;
    if (fgets(line, sizeof line, f) && line[0] >= '0' && line[0] <= '9')
        v = strtoull(line, NULL, 10);
    fclose(f);
    return v;
}

uint64_t sysmem_limit(char *what, size_t cap)
{
    uint64_t phys = sysmem_physical();
    uint64_t cg = read_limit("/sys/fs/cgroup/memory.max");
    if (cg == 0)
        cg = read_limit("/sys/fs/cgroup/memory/memory.limit_in_bytes");
    int from_cg = cg > 0 && (phys == 0 || cg < phys);
    if (what && cap)
        snprintf(what, cap, "%s", from_cg ? "the cgroup's limit" : "physical memory");
    return from_cg ? cg : phys;
}
