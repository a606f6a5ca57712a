/* The data-parallel trainer's gradient sum (trainer/dp.h, one MPI_Allreduce of the whole
 * gradient block a step) over loopback between 2 ranks, for the gradients of resnet20 and
 * resnet18 (CIFAR stem) and torchvision's ResNet50: milliseconds per step and the algorithm
 * bandwidth (gradient bytes / time). Started without an MPI launcher, it runs itself under
 * `mpirun -np 2` (OpenMPI); a build without MPI reports nothing and succeeds. The scaling model
 * these figures feed is in docs/architecture.md ("Several trainers"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/nn/net.h"
#include "trainer/dp.h"

#define REPS 15

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Gradient floats of a model (its flat block, padding included, as the trainer sums it). */
static size_t grad_count(const char *model, int size, int stem)
{
    struct net_config nc = { model, 128, size, size, 1, 0, 0, stem, 0 };
    struct net *n = net_new_threads(&nc, 1);
    if (!n)
        return 0;
    size_t c = net_param_count(n);
    net_destroy(&n);
    return c;
}

int main(int argc, char **argv)
{
    if (!dp_built_with_mpi()) {
        fprintf(stderr, "bench_allreduce: npid built without MPI (make MPI=0): skipped\n");
        return 0;
    }
    if (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMI_SIZE")) {
        char *args[16];
        int k = 0;
        args[k++] = "mpirun";
        if (getuid() == 0)
            args[k++] = "--allow-run-as-root";
        args[k++] = "--oversubscribe";
        args[k++] = "--bind-to";
        args[k++] = "none";
        args[k++] = "-np";
        args[k++] = "2";
        args[k++] = argv[0];
        args[k] = NULL;
        execvp("mpirun", args);
        fprintf(stderr, "bench_allreduce: no mpirun (openmpi-bin): skipped\n");
        return 0;
    }
    if (dp_init(&argc, &argv) != 0)
        return 1;
    if (!dp_active()) {
        fprintf(stderr, "bench_allreduce: one rank only (a build without MPI?): skipped\n");
        dp_finalize();
        return 0;
    }
    struct { const char *name, *model; int size, stem; } cases[] = {
        { "resnet20", "resnet20", 32, NET_STEM_CIFAR },
        { "resnet18", "resnet18", 32, NET_STEM_CIFAR },
        { "resnet50-imagenet", "resnet50", 224, NET_STEM_IMAGENET },
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        size_t n = grad_count(cases[ci].model, cases[ci].size, cases[ci].stem);
        float *g = n ? calloc(n, sizeof *g) : NULL;
        if (!g) {
            fprintf(stderr, "bench_allreduce: %s: cannot build\n", cases[ci].name);
            dp_abort(1);
        }
        double t[REPS];
        for (int r = -2; r < REPS; r++) {
            dp_any(0); /* start together */
            double t0 = clock_seconds();
            dp_sum_f32(g, n);
            if (r >= 0)
                t[r] = clock_seconds() - t0;
        }
        qsort(t, REPS, sizeof t[0], cmp_double);
        double ms = t[REPS / 2] * 1e3, mb = (double)n * 4.0 / 1e6;
        if (dp_rank() == 0)
            printf("{\"bench\": \"allreduce\", \"case\": \"%s/%d ranks/loopback\", \"metric\": "
                   "\"ms_per_step\", \"value\": %.3f, \"unit\": \"ms\", \"grad_mb\": %.2f, "
                   "\"algbw_gbit_s\": %.2f}\n", cases[ci].name, dp_size(), ms, mb,
                   mb * 8e-3 / (ms * 1e-3));
        fflush(stdout);
        free(g);
    }
    dp_finalize();
    return 0;
}
