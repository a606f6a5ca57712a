/* OpenBLAS kernel selection.
 *
 * Debian's OpenBLAS 0.3.21 reads OPENBLAS_CORETYPE when the library loads and, on CPUs it
 * does not recognise, falls back to a generic SSE3 ("Prescott") kernel about 5x slower.
 * blas_setup(), called first thing in main() of every process that uses BLAS, re-executes
 * the process (/proc/self/exe, same argv) with OPENBLAS_CORETYPE=SkylakeX (AVX-512) or
 * Haswell (AVX2) when the kernel in use is a pre-AVX2 one on a CPU that has those
 * instructions, unless the user set OPENBLAS_CORETYPE. An environment marker
 * (NPID_BLAS_REEXEC) prevents a second re-exec. It logs the kernel in use. */
#ifndef NPID_BLAS_H
#define NPID_BLAS_H

void blas_setup(int argc, char **argv);
/* A copy of argv (argc + 1 pointers, NULL-terminated; the strings are shared) for a process
 * that parses its flags before blas_setup: parsing rewrites argv, and a re-exec needs the
 * original. Parsing first keeps --help and usage errors free of blas_setup's log line. */
char **blas_argv_copy(int argc, char **argv);
/* The kernel OpenBLAS uses, e.g. "Haswell", "SkylakeX", "Prescott". */
const char *blas_corename(void);
/* Sets the number of OpenBLAS threads (n >= 1). */
void blas_set_threads(int n);
int blas_threads(void);
/* Pure decision used by blas_setup: the OPENBLAS_CORETYPE to re-execute with for a kernel
 * name and CPU features, or NULL when the kernel is fine. */
const char *blas_pick_coretype(const char *corename, int has_avx512, int has_avx2);

#endif
