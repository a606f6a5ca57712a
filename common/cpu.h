/* Instruction-set dispatch for the hand-written kernels.
 *
 * One binary carries every kernel: the AVX-512 ones (direct 3x3 convolution, kNN selection,
 * the element-wise layer kernels) are compiled with per-function target options between
 * CPU_BEGIN_AVX512 and CPU_END, whatever -march the build used, and each caller picks a
 * kernel from cpu_isa() at run time. So a package or a container image built for a
 * baseline x86-64 runs the same kernels as a -march=native build on a CPU that has them.
 *
 * cpu_isa() is the best level the CPU has (from cpuid), capped by the environment variable
 * NPID_ISA=base|avx2|avx512 when set (to test or time a lower path on a bigger CPU; a level
 * above the CPU's is capped to the CPU's). blas_setup() logs the choice and rejects an
 * unknown NPID_ISA. */
#ifndef NPID_CPU_H
#define NPID_CPU_H

enum cpu_isa { CPU_ISA_BASE = 0, CPU_ISA_AVX2 = 1, CPU_ISA_AVX512 = 2 };

/* The level in force: detected, capped by NPID_ISA (an unknown value counts as unset here;
 * blas_setup() stops the process on it first). Thread-safe, cheap after the first call. */
enum cpu_isa cpu_isa(void);
/* The best level this CPU has, ignoring NPID_ISA. AVX512 needs AVX-512 F, BW, DQ and VL;
 * AVX2 needs AVX2 and FMA. */
enum cpu_isa cpu_isa_detected(void);
/* Sets the level in force (capped to the detected one) and returns what was set: for tests
 * that run every kernel a machine has. */
enum cpu_isa cpu_isa_set(enum cpu_isa isa);
/* "base", "avx2", "avx512" */
const char *cpu_isa_name(enum cpu_isa isa);
/* The level named s (as cpu_isa_name spells it), or -1. */
int cpu_isa_parse(const char *s);

/* Target options of each level: functions defined between CPU_BEGIN_<level> and CPU_END, or
 * carrying CPU_TARGET_<level>, compile for that level whatever -march says; call them only
 * when cpu_isa() is at least that level. */
#define CPU_TARGET_AVX512                                                                      \
    __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512cd,avx2,fma,bmi,bmi2,"    \
                          "lzcnt,popcnt,f16c")))
#define CPU_TARGET_AVX2 __attribute__((target("avx2,fma,bmi,bmi2,lzcnt,popcnt,f16c")))
#define CPU_BEGIN_AVX512                                                                       \
    _Pragma("GCC push_options")                                                                \
    _Pragma("GCC target(\"avx512f,avx512bw,avx512dq,avx512vl,avx512cd,avx2,fma,bmi,bmi2,lzcnt,popcnt,f16c\")")
#define CPU_END _Pragma("GCC pop_options")

/* Defines static void name params, which runs name##_body args compiled for the level in
 * force: name##_body must be a static always-inline function (CPU_INLINE) written for any
 * level (GCC vector extensions or plain loops), which the compiler then vectorises three
 * times, once per level, each copy inlined into its own target-attributed wrapper. */
#define CPU_INLINE static inline __attribute__((always_inline))
#define CPU_VARIANTS(name, params, args)                                                       \
    CPU_TARGET_AVX512 static void name##_avx512 params { name##_body args; }                   \
    CPU_TARGET_AVX2 static void name##_avx2 params { name##_body args; }                       \
    static void name##_base params { name##_body args; }                                       \
    static void name params                                                                    \
    {                                                                                          \
        switch (cpu_isa()) {                                                                   \
        case CPU_ISA_AVX512: name##_avx512 args; break;                                        \
        case CPU_ISA_AVX2: name##_avx2 args; break;                                            \
        default: name##_base args; break;                                                      \
        }                                                                                      \
    }

#endif
