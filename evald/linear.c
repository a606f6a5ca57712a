/* Multinomial logistic regression on frozen features (linear.h). */
#include "evald/linear.h"

#include "common/clock.h"
#include "common/sig.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LBFGS_PAIRS 10

void linear_model_free(struct linear_model *m)
{
    free(m->mean);
    free(m->inv_std);
    free(m->w);
    memset(m, 0, sizeof *m);
}

double linear_grid(int i)
{
    return pow(10.0, -1.0 - 0.5 * (double)i);
}

/* Work space of one fit: the standardised rows, the logits, the float weights. */
struct lr_work {
    const float *Z;
    const uint32_t *y;
    size_t n;
    int d, C;
    double lambda;
    float *S;  /* (n, C) logits, then dL/dlogits */
    float *Wf; /* (C, d) */
    float *Gf; /* (C, d) */
    double *e; /* (C) */
};

/* f(x) and its gradient g (both at x = [W (C,d), b (C)]). */
static double lr_eval(struct lr_work *k, const double *x, double *g)
{
    size_t n = k->n, d = (size_t)k->d, C = (size_t)k->C, nw = C * d;
    for (size_t i = 0; i < nw; i++)
        k->Wf[i] = (float)x[i];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)C, (int)d, 1.0f, k->Z,
                (int)d, k->Wf, (int)d, 0.0f, k->S, (int)C);
    const double *b = x + nw;
    double loss = 0.0, inv_n = 1.0 / (double)n;
    double *gb = g + nw;
    for (size_t c = 0; c < C; c++)
        gb[c] = 0.0;
    for (size_t i = 0; i < n; i++) {
        float *s = k->S + i * C;
        double mx = -INFINITY;
        for (size_t c = 0; c < C; c++) {
            double v = (double)s[c] + b[c];
            mx = v > mx ? v : mx;
        }
        double z = 0.0, *e = k->e;
        for (size_t c = 0; c < C; c++) {
            e[c] = exp((double)s[c] + b[c] - mx);
            z += e[c];
        }
        size_t yi = k->y[i];
        loss += log(z) + mx - ((double)s[yi] + b[yi]);
        for (size_t c = 0; c < C; c++) {
            double p = (e[c] / z - (c == yi)) * inv_n;
            s[c] = (float)p;
            gb[c] += p;
        }
    }
    /* G_W = P^T Z, P the (n, C) matrix of dL/dlogits */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)C, (int)d, (int)n, 1.0f, k->S,
                (int)C, k->Z, (int)d, 0.0f, k->Gf, (int)d);
    double reg = 0.0;
    for (size_t i = 0; i < nw; i++) {
        g[i] = (double)k->Gf[i] + k->lambda * x[i];
        reg += x[i] * x[i];
    }
    return loss * inv_n + 0.5 * k->lambda * reg;
}

double linear_objective(const float *Z, const uint32_t *y, size_t n, int d, int C, double lambda,
                        const double *w, double *g)
{
    size_t D = (size_t)d;
    struct lr_work k = { .Z = Z, .y = y, .n = n, .d = d, .C = C, .lambda = lambda };
    k.S = malloc(n * (size_t)C * sizeof *k.S);
    k.Wf = malloc((size_t)C * D * sizeof *k.Wf);
    k.Gf = malloc((size_t)C * D * sizeof *k.Gf);
    k.e = malloc((size_t)C * sizeof *k.e);
    double f = NAN;
    if (k.S && k.Wf && k.Gf && k.e)
        f = lr_eval(&k, w, g);
    else
        errno = ENOMEM;
    free(k.S);
    free(k.Wf);
    free(k.Gf);
    free(k.e);
    return f;
}

static double dot(const double *a, const double *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static double max_abs(const double *a, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        m = fabs(a[i]) > m ? fabs(a[i]) : m;
    return m;
}

/* L-BFGS on k from x (updated in place). */
static int lbfgs(struct lr_work *k, double *x, int max_iter, double tol,
                 struct linear_fit_info *info)
{
    size_t N = (size_t)k->C * (size_t)k->d + (size_t)k->C;
    double *buf = malloc((4 + 2 * LBFGS_PAIRS) * N * sizeof *buf);
    if (!buf) {
        errno = ENOMEM;
        return -1;
    }
    double *g = buf, *p = g + N, *xn = p + N, *gn = xn + N;
    double *S = gn + N, *Y = S + LBFGS_PAIRS * N;
    double rho[LBFGS_PAIRS], alpha[LBFGS_PAIRS];
    int npair = 0, head = 0; /* pairs head-npair .. head-1 (mod LBFGS_PAIRS) */
    double f = lr_eval(k, x, g);
    int evals = 1, it = 0, converged = 0;
    for (; it < max_iter; it++) {
        if (sig_stop) { /* SIGTERM / SIGINT: give up the fit */
            free(buf);
            errno = EINTR;
            return -1;
        }
        if (max_abs(g, N) < tol) {
            converged = 1;
            break;
        }
        /* p = -H g (two-loop recursion) */
        for (size_t i = 0; i < N; i++)
            p[i] = -g[i];
        for (int j = 0; j < npair; j++) {
            int q = (head - 1 - j + LBFGS_PAIRS) % LBFGS_PAIRS;
            alpha[q] = rho[q] * dot(S + (size_t)q * N, p, N);
            const double *yq = Y + (size_t)q * N;
            for (size_t i = 0; i < N; i++)
                p[i] -= alpha[q] * yq[i];
        }
        double t = 1.0;
        if (npair > 0) {
            int q = (head - 1 + LBFGS_PAIRS) % LBFGS_PAIRS;
            const double *yq = Y + (size_t)q * N;
            double gamma = 1.0 / (rho[q] * dot(yq, yq, N));
            for (size_t i = 0; i < N; i++)
                p[i] *= gamma;
        } else {
            double gn2 = sqrt(dot(g, g, N));
            t = gn2 > 1.0 ? 1.0 / gn2 : 1.0;
        }
        for (int j = npair - 1; j >= 0; j--) {
            int q = (head - 1 - j + LBFGS_PAIRS) % LBFGS_PAIRS;
            double beta = rho[q] * dot(Y + (size_t)q * N, p, N);
            const double *sq = S + (size_t)q * N;
            for (size_t i = 0; i < N; i++)
                p[i] += (alpha[q] - beta) * sq[i];
        }
        double gp = dot(g, p, N);
        if (!(gp < 0.0)) { /* not a descent direction: restart from steepest descent */
            npair = 0;
            for (size_t i = 0; i < N; i++)
                p[i] = -g[i];
            gp = -dot(g, g, N);
        }
        /* Armijo backtracking */
        double fn = f;
        int ok = 0;
        for (int ls = 0; ls < 60; ls++) {
            for (size_t i = 0; i < N; i++)
                xn[i] = x[i] + t * p[i];
            fn = lr_eval(k, xn, gn);
            evals++;
            if (isfinite(fn) && fn <= f + 1e-4 * t * gp) {
                ok = 1;
                break;
            }
            t *= 0.5;
        }
        if (!ok)
            break; /* no decrease at float precision: as good as it gets */
        double *sq = S + (size_t)head * N, *yq = Y + (size_t)head * N;
        for (size_t i = 0; i < N; i++) {
            sq[i] = xn[i] - x[i];
            yq[i] = gn[i] - g[i];
        }
        double ys = dot(sq, yq, N);
        if (ys > 1e-12 * dot(yq, yq, N) && ys > 0.0) {
            rho[head] = 1.0 / ys;
            head = (head + 1) % LBFGS_PAIRS;
            npair += npair < LBFGS_PAIRS;
        }
        double df = f - fn;
        memcpy(x, xn, N * sizeof *x);
        memcpy(g, gn, N * sizeof *g);
        f = fn;
        if (df <= 1e-12 * (fabs(f) > 1.0 ? fabs(f) : 1.0) && max_abs(g, N) < 10 * tol) {
            converged = 1;
            break;
        }
    }
    if (info) {
        info->iters = it;
        info->evals = evals;
        info->converged = converged || max_abs(g, N) < tol;
        info->loss = f;
        info->grad_max = max_abs(g, N);
    }
    free(buf);
    return 0;
}

int linear_fit(struct linear_model *m, const float *X, const uint32_t *y, size_t n, int d, int C,
               double lambda, int max_iter, double tol, struct linear_fit_info *info)
{
    double t0 = clock_seconds();
    if (n == 0 || d < 1 || C < 2 || !(lambda >= 0.0)) {
        errno = EINVAL;
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (y[i] >= (uint32_t)C) {
            errno = EINVAL;
            return -1;
        }
    size_t D = (size_t)d, N = (size_t)C * D + (size_t)C;
    if (m->d != d || m->C != C || !m->w) {
        linear_model_free(m);
        m->d = d;
        m->C = C;
        m->w = calloc(N, sizeof *m->w);
        m->mean = malloc(D * sizeof *m->mean);
        m->inv_std = malloc(D * sizeof *m->inv_std);
        if (!m->w || !m->mean || !m->inv_std) {
            linear_model_free(m);
            errno = ENOMEM;
            return -1;
        }
    }
    /* standardisation over the rows, in double */
    double *sum = calloc(2 * D, sizeof *sum);
    float *Z = malloc(n * D * sizeof *Z);
    struct lr_work k = { .Z = Z, .y = y, .n = n, .d = d, .C = C, .lambda = lambda };
    k.S = malloc(n * (size_t)C * sizeof *k.S);
    k.Wf = malloc((size_t)C * D * sizeof *k.Wf);
    k.Gf = malloc((size_t)C * D * sizeof *k.Gf);
    k.e = malloc((size_t)C * sizeof *k.e);
    int rc = -1;
    if (!sum || !Z || !k.S || !k.Wf || !k.Gf || !k.e) {
        errno = ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const float *x = X + i * D;
        for (size_t j = 0; j < D; j++) {
            if (!isfinite(x[j])) {
                errno = EINVAL;
                goto out;
            }
            sum[j] += x[j];
            sum[D + j] += (double)x[j] * x[j];
        }
    }
    for (size_t j = 0; j < D; j++) {
        double mu = sum[j] / (double)n, var = sum[D + j] / (double)n - mu * mu;
        double sd = var > 1e-24 ? sqrt(var) : 1.0;
        m->mean[j] = (float)mu;
        m->inv_std[j] = (float)(1.0 / sd);
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < D; j++)
            Z[i * D + j] = (X[i * D + j] - m->mean[j]) * m->inv_std[j];
    rc = lbfgs(&k, m->w, max_iter, tol, info);
    if (info)
        info->seconds = clock_seconds() - t0;
out:
    free(sum);
    free(Z);
    free(k.S);
    free(k.Wf);
    free(k.Gf);
    free(k.e);
    return rc;
}

void linear_scores(const struct linear_model *m, const float *X, size_t n, float *S)
{
    size_t D = (size_t)m->d, C = (size_t)m->C, chunk = 1024;
    float *Z = malloc(chunk * D * sizeof *Z), *W = malloc(C * D * sizeof *W);
    if (!Z || !W) { /* plain loops: slower, same result */
        for (size_t i = 0; i < n; i++)
            for (size_t c = 0; c < C; c++) {
                double s = m->w[C * D + c];
                for (size_t j = 0; j < D; j++)
                    s += m->w[c * D + j] * (double)((X[i * D + j] - m->mean[j]) * m->inv_std[j]);
                S[i * C + c] = (float)s;
            }
        free(Z);
        free(W);
        return;
    }
    for (size_t i = 0; i < C * D; i++)
        W[i] = (float)m->w[i];
    for (size_t s = 0; s < n; s += chunk) {
        size_t c = n - s < chunk ? n - s : chunk;
        for (size_t i = 0; i < c; i++)
            for (size_t j = 0; j < D; j++)
                Z[i * D + j] = (X[(s + i) * D + j] - m->mean[j]) * m->inv_std[j];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)c, (int)C, (int)D, 1.0f, Z,
                    (int)D, W, (int)D, 0.0f, S + s * C, (int)C);
        for (size_t i = 0; i < c; i++)
            for (size_t k = 0; k < C; k++)
                S[(s + i) * C + k] += (float)m->w[C * D + k];
    }
    free(Z);
    free(W);
}

int linear_accuracy(const struct linear_model *m, const float *X, const uint32_t *y, size_t n,
                    double *top1, double *top5, double *per_class)
{
    size_t C = (size_t)m->C, kk = C < 5 ? C : 5;
    float *S = malloc((n ? n : 1) * C * sizeof *S);
    size_t *hit = calloc(C, sizeof *hit), *cnt = calloc(C, sizeof *cnt);
    if (!S || !hit || !cnt) {
        free(S);
        free(hit);
        free(cnt);
        errno = ENOMEM;
        return -1;
    }
    linear_scores(m, X, n, S);
    size_t c1 = 0, c5 = 0;
    for (size_t i = 0; i < n; i++) {
        const float *s = S + i * C;
        size_t yi = y[i], rank = 0;
        /* rank of the true class; ties go against it (a constant model scores chance) */
        for (size_t c = 0; c < C; c++)
            rank += c != yi && s[c] >= s[yi];
        c1 += rank == 0;
        c5 += rank < kk;
        if (yi < C) {
            cnt[yi]++;
            hit[yi] += rank == 0;
        }
    }
    *top1 = n ? (double)c1 / (double)n : 0.0;
    *top5 = n ? (double)c5 / (double)n : 0.0;
    if (per_class)
        for (size_t c = 0; c < C; c++)
            per_class[c] = cnt[c] ? (double)hit[c] / (double)cnt[c] : NAN;
    free(S);
    free(hit);
    free(cnt);
    return 0;
}

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

int linear_select(struct linear_model *m, const float *X, const uint32_t *y, size_t n, int d,
                  int C, uint64_t seed, int max_iter, double tol, struct linear_selection *sel,
                  struct linear_fit_info *info)
{
    size_t D = (size_t)d, nv = 0;
    for (size_t i = 0; i < n; i++)
        nv += mix64(seed ^ mix64(i)) % 5 == 0;
    size_t nf = n - nv;
    if (nv == 0 || nf == 0) {
        errno = EINVAL;
        return -1;
    }
    float *Xf = malloc(nf * D * sizeof *Xf), *Xv = malloc(nv * D * sizeof *Xv);
    uint32_t *yf = malloc(nf * sizeof *yf), *yv = malloc(nv * sizeof *yv);
    struct linear_model path = { 0 };
    int rc = -1;
    if (!Xf || !Xv || !yf || !yv) {
        errno = ENOMEM;
        goto out;
    }
    size_t a = 0, b = 0;
    for (size_t i = 0; i < n; i++) {
        if (mix64(seed ^ mix64(i)) % 5 == 0) {
            memcpy(Xv + b * D, X + i * D, D * sizeof *X);
            yv[b++] = y[i];
        } else {
            memcpy(Xf + a * D, X + i * D, D * sizeof *X);
            yf[a++] = y[i];
        }
    }
    sel->n_fit = nf;
    sel->n_val = nv;
    double best = -1.0;
    int best_i = 0;
    for (int i = 0; i < LINEAR_GRID; i++) {
        double t1, t5;
        if (linear_fit(&path, Xf, yf, nf, d, C, linear_grid(i), max_iter, tol, NULL) != 0 ||
            linear_accuracy(&path, Xv, yv, nv, &t1, &t5, NULL) != 0)
            goto out;
        sel->val_top1[i] = t1;
        if (t1 > best) {
            best = t1;
            best_i = i;
        }
    }
    sel->lambda = linear_grid(best_i);
    rc = linear_fit(m, X, y, n, d, C, sel->lambda, max_iter, tol, info);
out:
    linear_model_free(&path);
    free(Xf);
    free(Xv);
    free(yf);
    free(yv);
    return rc;
}
