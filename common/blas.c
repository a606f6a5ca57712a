/* OpenBLAS kernel selection and re-exec (see blas.h). */
#include "common/blas.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/cpu.h"
#include "common/log.h"

#define BLAS_MARKER "NPID_BLAS_REEXEC"

/* Kernels without AVX2 code paths: generic fallbacks and older cores. */
static const char *const blas_slow_cores[] = {
    "prescott", "katmai", "coppermine", "northwood", "banias", "core2", "penryn",
    "dunnington", "nehalem", "sandybridge", "atom", "opteron", "opteron_sse3", "barcelona",
    "bobcat", "bulldozer", "piledriver", "steamroller", "excavator", "generic", "unknown",
};

const char *blas_pick_coretype(const char *corename, int has_avx512, int has_avx2)
{
    int slow = corename == NULL || corename[0] == '\0';
    for (size_t i = 0; !slow && i < sizeof(blas_slow_cores) / sizeof(blas_slow_cores[0]); i++)
        if (strcasecmp(corename, blas_slow_cores[i]) == 0) slow = 1;
    if (!slow) return NULL;
    if (has_avx512) return "SkylakeX";
    if (has_avx2) return "Haswell";
    return NULL;
}

const char *blas_corename(void)
{
    const char *c = openblas_get_corename();
    return c ? c : "unknown";
}

void blas_set_threads(int n)
{
    if (n >= 1) openblas_set_num_threads(n);
}

int blas_threads(void)
{
    return openblas_get_num_threads();
}

char **blas_argv_copy(int argc, char **argv)
{
    char **copy = calloc((size_t)argc + 1, sizeof *copy);
    if (!copy)
        npid_fatal("out of memory");
    memcpy(copy, argv, (size_t)argc * sizeof *copy);
    return copy;
}

/* Logs the kernel level the hand-written kernels run (see cpu.h). */
static void blas_log_isa(void)
{
    enum cpu_isa d = cpu_isa_detected(), in_force = cpu_isa();
    if (in_force == d)
        log_info("kernels: %s (the CPU's best)", cpu_isa_name(in_force));
    else
        log_info("kernels: %s (NPID_ISA=%s; the CPU has %s)", cpu_isa_name(in_force),
                 getenv("NPID_ISA"), cpu_isa_name(d));
}

void blas_setup(int argc, char **argv)
{
    (void)argc;
    const char *isa = getenv("NPID_ISA");
    if (isa && cpu_isa_parse(isa) < 0)
        npid_fatal("NPID_ISA=%s is not a kernel level (base, avx2 or avx512)", isa);
    const char *core = blas_corename();
    const char *user = getenv("OPENBLAS_CORETYPE");
    __builtin_cpu_init();
    if (user && !getenv(BLAS_MARKER)) {
        log_info("blas: OpenBLAS kernel %s (OPENBLAS_CORETYPE=%s set by the user), %d threads",
                 core, user, blas_threads());
        if (__builtin_cpu_supports("avx512f") && strcasecmp(user, "SkylakeX") != 0
            && strcasecmp(user, "Cooperlake") != 0)
            log_warn("blas: this CPU has AVX-512; OPENBLAS_CORETYPE=SkylakeX runs sgemm about "
                     "twice as fast as %s", user);
        blas_log_isa();
        return;
    }
    const char *want = blas_pick_coretype(core, __builtin_cpu_supports("avx512f"),
                                          __builtin_cpu_supports("avx2"));
    if (want && !getenv(BLAS_MARKER)) {
        log_info("blas: OpenBLAS chose the %s kernel on a CPU with %s; re-executing with "
                 "OPENBLAS_CORETYPE=%s", core, strcmp(want, "SkylakeX") ? "AVX2" : "AVX-512",
                 want);
        if (setenv("OPENBLAS_CORETYPE", want, 1) == 0 && setenv(BLAS_MARKER, "1", 1) == 0)
            execv("/proc/self/exe", argv);
        log_warn("blas: re-exec failed; continuing with the slow %s kernel", core);
        unsetenv(BLAS_MARKER);
        blas_log_isa();
        return;
    }
    if (want)
        log_warn("blas: still the %s kernel after re-exec with OPENBLAS_CORETYPE=%s", core,
                 user ? user : "(unset)");
    else
        log_info("blas: OpenBLAS kernel %s, %d threads", core, blas_threads());
    unsetenv(BLAS_MARKER);
    blas_log_isa();
}
