/* Data-parallel ranks over MPI: see dp.h. */
#include "trainer/dp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

#ifdef NPID_MPI
#include <mpi.h>
#endif

static int g_rank, g_size = 1;

/* The launcher's environment: OpenMPI, MPICH/Hydra and Slurm (PMI), PMIx. *size: the job's
 * ranks when the launcher says (0: not said). */
static int launched_by_mpi(int *size)
{
    const char *v = getenv("OMPI_COMM_WORLD_SIZE");
    if (!v || !*v)
        v = getenv("PMI_SIZE");
    *size = v && *v ? atoi(v) : 0;
    return (v && *v) || getenv("PMIX_RANK") != NULL;
}

void dp_log_name(const char *prog, char *out, size_t n)
{
    int size;
    const char *r = getenv("OMPI_COMM_WORLD_RANK");
    if (!r || !*r)
        r = getenv("PMI_RANK");
    if (!r || !*r)
        r = getenv("PMIX_RANK");
    if (launched_by_mpi(&size) && size > 1 && r && *r)
        snprintf(out, n, "%s[%d/%d]", prog, atoi(r), size);
    else
        snprintf(out, n, "%s", prog);
}

void dp_slice(uint32_t total, int rank, int size, uint32_t *lo, uint32_t *count)
{
    uint64_t a = (uint64_t)total * (uint64_t)rank / (uint64_t)size;
    uint64_t b = (uint64_t)total * (uint64_t)(rank + 1) / (uint64_t)size;
    *lo = (uint32_t)a;
    *count = (uint32_t)(b - a);
}

int dp_active(void) { return g_size > 1; }
int dp_rank(void) { return g_rank; }
int dp_size(void) { return g_size; }

#ifdef NPID_MPI

static int g_mpi; /* MPI_Init done, MPI_Finalize not yet */
static int *g_counts, *g_displs; /* (size) dp_gather_rows's MPI_Allgatherv arguments */

int dp_built_with_mpi(void) { return 1; }

int dp_init(int *argc, char ***argv)
{
    int size = 0;
    if (!launched_by_mpi(&size))
        return 0;
    (void)size; /* MPI_Comm_size says */
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        log_error("MPI: MPI_Init_thread failed");
        return -1;
    }
    g_mpi = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    g_counts = malloc(2 * (size_t)g_size * sizeof *g_counts);
    if (!g_counts) {
        log_error("MPI: out of memory");
        return -1;
    }
    g_displs = g_counts + g_size;
    if (provided < MPI_THREAD_FUNNELED) {
        log_error("MPI: the library gives no MPI_THREAD_FUNNELED support (level %d)", provided);
        return -1;
    }
    return 0;
}

void dp_finalize(void)
{
    if (g_mpi)
        MPI_Finalize();
    g_mpi = 0;
    free(g_counts);
    g_counts = g_displs = NULL;
}

void dp_abort(int code)
{
    if (g_mpi && g_size > 1)
        MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

/* MPI counts are int: large buffers go in pieces of at most 2^30 elements. */
#define DP_CHUNK ((size_t)1 << 30)

void dp_sum_f32(float *buf, size_t n)
{
    if (g_size == 1)
        return;
    for (size_t o = 0; o < n; o += DP_CHUNK) {
        size_t c = n - o < DP_CHUNK ? n - o : DP_CHUNK;
        MPI_Allreduce(MPI_IN_PLACE, buf + o, (int)c, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    }
}

void dp_sum_f64(double *buf, int n)
{
    if (g_size > 1)
        MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

int dp_any(int flag)
{
    if (g_size == 1)
        return flag != 0;
    int in = flag != 0, out = 0;
    MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return out;
}

void dp_bcast(void *buf, size_t bytes, int root)
{
    if (g_size == 1)
        return;
    for (size_t o = 0; o < bytes; o += DP_CHUNK) {
        size_t c = bytes - o < DP_CHUNK ? bytes - o : DP_CHUNK;
        MPI_Bcast((char *)buf + o, (int)c, MPI_BYTE, root, MPI_COMM_WORLD);
    }
}

void dp_gather_rows(const float *mine, float *all, uint32_t total, size_t width)
{
    uint32_t lo, count;
    dp_slice(total, g_rank, g_size, &lo, &count);
    if (g_size == 1) {
        if (all != mine)
            memmove(all, mine, (size_t)count * width * sizeof(float));
        return;
    }
    NPID_CHECK((size_t)total * width <= (size_t)0x7fffffff);
    for (int r = 0; r < g_size; r++) {
        uint32_t l, c;
        dp_slice(total, r, g_size, &l, &c);
        g_counts[r] = (int)((size_t)c * width);
        g_displs[r] = (int)((size_t)l * width);
    }
    MPI_Allgatherv(mine, g_counts[g_rank], MPI_FLOAT, all, g_counts, g_displs, MPI_FLOAT,
                   MPI_COMM_WORLD);
}

int dp_same_u64(uint64_t v)
{
    if (g_size == 1)
        return 1;
    unsigned long long in[2] = { v, ~v }, out[2];
    MPI_Allreduce(in, out, 2, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
    return out[0] == v && out[1] == ~v; /* max(v) == v and min(v) == v */
}

#else /* a build without MPI: one rank */

int dp_init(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    int size = 0;
    if (launched_by_mpi(&size) && size > 1) {
        log_error("started by an MPI launcher with %d ranks, but this npid-trainer was built "
                  "without MPI: rebuild with libopenmpi-dev installed (make MPI=1)", size);
        return -1;
    }
    return 0;
}

int dp_built_with_mpi(void) { return 0; }
void dp_finalize(void) {}
void dp_abort(int code) { exit(code); }
void dp_sum_f32(float *buf, size_t n) { (void)buf; (void)n; }
void dp_sum_f64(double *buf, int n) { (void)buf; (void)n; }
int dp_any(int flag) { return flag != 0; }
void dp_bcast(void *buf, size_t bytes, int root) { (void)buf; (void)bytes; (void)root; }
void dp_gather_rows(const float *mine, float *all, uint32_t total, size_t width)
{
    if (all != mine)
        memmove(all, mine, (size_t)total * width * sizeof(float));
}
int dp_same_u64(uint64_t v) { (void)v; return 1; }

#endif
