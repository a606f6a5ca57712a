/* How much memory this process may use: physical memory, capped by the cgroup's limit when
 * one is set (cgroup v2 memory.max, or v1 memory.limit_in_bytes), as a container sees it. */
#ifndef NPID_SYSMEM_H
#define NPID_SYSMEM_H
#include <stddef.h>
#include <stdint.h>

/* The limit in bytes (0 when unknown), and into what (cap bytes, may be NULL) where it came
 * from: "physical memory" or "the cgroup's limit". */
uint64_t sysmem_limit(char *what, size_t cap);
/* Physical memory in bytes (0 when unknown). */
uint64_t sysmem_physical(void);

#endif
