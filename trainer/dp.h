/* Data-parallel ranks: the few collective operations the trainer needs, over MPI
 * (docs/architecture.md, "Several trainers: data parallel over MPI").
 *
 * dp_init joins the MPI job when the process was started by an MPI launcher (mpirun, mpiexec,
 * srun with PMI: one of OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_RANK is set); otherwise, and in
 * a build without MPI (make MPI=0), it is one rank of one and every operation below is a
 * no-op or a copy, so a single trainer needs no MPI at run time. All calls come from the
 * main thread (MPI_THREAD_FUNNELED), in the same order on every rank: they are collectives.
 *
 * Failures of MPI itself abort the job (MPI's default error handler): a rank that dies ends
 * every rank, and the run resumes from its last checkpoint. */
#ifndef NPID_TRAINER_DP_H
#define NPID_TRAINER_DP_H
#include <stddef.h>
#include <stdint.h>

/* 0; or -1 (logged) when launched by mpirun with more than one rank in a build without MPI,
 * or when MPI_Init fails. Call once, before any thread is started. */
int dp_init(int *argc, char ***argv);
/* The log name of this process before dp_init: "prog[r/N]" when an MPI launcher started it
 * as rank r of N > 1 (its environment says: OMPI_COMM_WORLD_RANK, PMI_RANK or PMIX_RANK), else
 * prog; dp_init does not change the rank, so the name stays right after it. */
void dp_log_name(const char *prog, char *out, size_t n);
/* 1 in a build with MPI (make MPI=1). */
int dp_built_with_mpi(void);
/* 1 when the job has more than one rank. */
int dp_active(void);
int dp_rank(void);
int dp_size(void);
/* Ends the job on this rank: MPI_Finalize after a good run (every rank must call it). */
void dp_finalize(void);
/* Ends every rank of the job with exit code code (MPI_Abort); a single rank just exits. */
void dp_abort(int code) __attribute__((noreturn));

/* In-place sum of n floats over the ranks (every rank gets the same sum). */
void dp_sum_f32(float *buf, size_t n);
/* The same for n doubles. */
void dp_sum_f64(double *buf, int n);
/* 1 on every rank when any rank passes a non-zero flag. */
int dp_any(int flag);
/* bytes of buf from rank root to every rank. */
void dp_bcast(void *buf, size_t bytes, int root);
/* Rows [lo(r), lo(r + 1)) of a total-row block come from rank r, lo(r) = r * total / size
 * (dp_slice): each rank passes its own rows mine (count(r) x width floats) and receives all
 * total x width floats in all, in rank order. */
void dp_gather_rows(const float *mine, float *all, uint32_t total, size_t width);
/* 1 on every rank when v is the same on every rank. */
int dp_same_u64(uint64_t v);

/* This rank's share of total items: [*lo, *lo + *count), lo = rank * total / size. */
void dp_slice(uint32_t total, int rank, int size, uint32_t *lo, uint32_t *count);

#endif
