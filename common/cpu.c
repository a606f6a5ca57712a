/* Instruction-set detection and the NPID_ISA cap (see cpu.h). */
#include "common/cpu.h"

#include <stdlib.h>
#include <string.h>

static const char *const cpu_names[] = { "base", "avx2", "avx512" };

/* -1 until computed; then the level in force. Relaxed atomics: every thread computes the
 * same value, so a race only repeats the work. */
static int cpu_level = -1;

enum cpu_isa cpu_isa_detected(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return CPU_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CPU_ISA_AVX2;
    return CPU_ISA_BASE;
}

int cpu_isa_parse(const char *s)
{
    for (int i = 0; s && i < (int)(sizeof(cpu_names) / sizeof(cpu_names[0])); i++)
        if (strcmp(s, cpu_names[i]) == 0) return i;
    return -1;
}

const char *cpu_isa_name(enum cpu_isa isa)
{
    return (unsigned)isa < sizeof(cpu_names) / sizeof(cpu_names[0]) ? cpu_names[isa] : "?";
}

enum cpu_isa cpu_isa_set(enum cpu_isa isa)
{
    enum cpu_isa d = cpu_isa_detected();
    if (isa > d) isa = d;
    __atomic_store_n(&cpu_level, (int)isa, __ATOMIC_RELAXED);
    return isa;
}

enum cpu_isa cpu_isa(void)
{
    int l = __atomic_load_n(&cpu_level, __ATOMIC_RELAXED);
    if (l >= 0) return (enum cpu_isa)l;
    enum cpu_isa d = cpu_isa_detected();
    int cap = cpu_isa_parse(getenv("NPID_ISA"));
    if (cap >= 0 && (enum cpu_isa)cap < d) d = (enum cpu_isa)cap;
    __atomic_store_n(&cpu_level, (int)d, __ATOMIC_RELAXED);
    return d;
}
