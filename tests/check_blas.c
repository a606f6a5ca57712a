/* Unit tests for OpenBLAS kernel selection (common/blas.h): the re-exec decision, that a
 * user's OPENBLAS_CORETYPE is respected, and that a network forward + backward gives the
 * same results with the Haswell and the generic (Prescott) kernels within float tolerance.
 * Each kernel runs in a child process (this binary with --child), because OpenBLAS reads
 * OPENBLAS_CORETYPE only when it loads. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/blas.h"
#include "common/log.h"
#include "common/nn/net.h"
#include "tests/check_nn_util.h"

#define CH_B 4
#define CH_D 16
#define CH_GRADS 4096

struct child_out {
    char core[32];
    float feat[CH_B * CH_D];
    float grads[CH_GRADS];
    double grad_norm2;
};

static int child_main(int argc, char **argv)
{
    blas_setup(argc, argv);
    struct child_out o;
    memset(&o, 0, sizeof(o));
    snprintf(o.core, sizeof(o.core), "%s", blas_corename());
    struct net_config cfg = { "resnet20", CH_D, 16, 16, CH_B, 11, NET_INIT_HE, NET_STEM_CIFAR, 0 };
    struct net *n = net_new(&cfg);
    if (!n) return 1;
    size_t nx = (size_t)CH_B * 3 * 16 * 16;
    float *x = malloc(sizeof(float) * nx), df[CH_B * CH_D];
    fill_normal(x, nx, 1.0, 3);
    fill_normal(df, CH_B * CH_D, 1.0, 4);
    memcpy(o.feat, net_forward(n, x, CH_B, 1), sizeof(o.feat));
    net_backward(n, df);
    size_t np = net_param_count(n);
    const float *g = net_grads(n);
    for (size_t i = 0; i < CH_GRADS; i++) o.grads[i] = g[i * (np / CH_GRADS)];
    o.grad_norm2 = dot_d(g, g, np);
    free(x);
    net_destroy(&n);
    return fwrite(&o, sizeof(o), 1, stdout) == 1 ? 0 : 1;
}

static void run_child(const char *coretype, struct child_out *o)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        setenv("OPENBLAS_CORETYPE", coretype, 1);
        setenv("NPID_LOG_LEVEL", "error", 1);
        char *args[] = { "check_blas", "--child", NULL };
        execv("/proc/self/exe", args);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "rb");
    size_t got = fread(o, sizeof(*o), 1, f);
    fclose(f);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0 && got == 1, "child %s failed",
                  coretype);
}

START_TEST(test_pick)
{
    ck_assert_str_eq(blas_pick_coretype("Prescott", 1, 1), "SkylakeX");
    ck_assert_str_eq(blas_pick_coretype("prescott", 0, 1), "Haswell");
    ck_assert_str_eq(blas_pick_coretype("Nehalem", 0, 1), "Haswell");
    ck_assert_ptr_null(blas_pick_coretype("Prescott", 0, 0));
    ck_assert_ptr_null(blas_pick_coretype("Haswell", 1, 1));
    ck_assert_ptr_null(blas_pick_coretype("SkylakeX", 1, 1));
    ck_assert_ptr_null(blas_pick_coretype("Cooperlake", 1, 1));
    ck_assert_str_eq(blas_pick_coretype("", 1, 1), "SkylakeX");
}
END_TEST

START_TEST(test_kernels_agree)
{
    struct child_out *h = malloc(sizeof(*h)), *p = malloc(sizeof(*p));
    run_child("Haswell", h);
    run_child("Prescott", p);
    /* the user's choice is respected: no re-exec towards a faster kernel */
    ck_assert_str_eq(h->core, "Haswell");
    ck_assert_str_eq(p->core, "Prescott");
    double fdiff = 0.0, gd = 0.0, gn = 0.0;
    for (int i = 0; i < CH_B * CH_D; i++) fdiff = fmax(fdiff, fabs(h->feat[i] - p->feat[i]));
    for (int i = 0; i < CH_GRADS; i++) {
        gd += (double)(h->grads[i] - p->grads[i]) * (h->grads[i] - p->grads[i]);
        gn += (double)h->grads[i] * h->grads[i];
    }
    ck_assert_msg(fdiff < 1e-4, "features differ by %g", fdiff);
    ck_assert_msg(sqrt(gd / gn) < 1e-3, "gradients differ, rel %g", sqrt(gd / gn));
    ck_assert_msg(fabs(h->grad_norm2 - p->grad_norm2) < 1e-3 * h->grad_norm2, "|g|^2 %g vs %g",
                  h->grad_norm2, p->grad_norm2);
    free(h);
    free(p);
}
END_TEST

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--child") == 0) {
        log_init("check_blas");
        return child_main(argc, argv);
    }
    Suite *s = suite_create("blas");
    TCase *tc = tcase_create("blas");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_pick);
    tcase_add_test(tc, test_kernels_agree);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
