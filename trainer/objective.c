/* NCE, InfoNCE and softmax objectives (see objective.h). Scores and probabilities are float;
 * reductions (loss, Z estimate, softmax normaliser) are double.
 *
 * The products run with OpenBLAS on one thread (set and restored around each call), because
 * a multi-threaded call leaves an OpenBLAS worker spinning for a while afterwards, stealing a
 * core from the network's own threads. The softmax instead splits the bank's rows between
 * the threads of cfg.team, in blocks of SOFTMAX_COLS rows (a block's scores and rows stay in
 * L2 between its two products), and never holds the B x n logits. */
#include "trainer/objective.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/nn/team.h"
#include "common/nn/vec.h"

#define NCE_EPS 1e-7
/* Bank rows per softmax block. bench_softmax (B 128, d 128, n 50,000, one thread, SkylakeX
 * kernel) measured 256 / 512 / 1024 / 2048 rows at 26-28 / 26-29 / 26-29 / 29-30 ms per
 * call, so about equal; the products then run near the single-core sgemm peak. */
#define SOFTMAX_COLS 512

struct objective {
    struct objective_config cfg;
    float *scores;   /* (max_batch, m) or (max_batch, n) for softmax */
    float *s0;       /* (max_batch) positive scores, then their gradients */
    float *gram;     /* (max_batch, max_batch) two-view scores of the batch against itself */
    size_t scores_floats;
    double z, z_est;
    int z_set;
    int nt;          /* softmax threads: the team's size */
    float *acc;      /* (nt, max_batch, d) softmax partial gradients */
    float *mx;       /* (nt, max_batch) softmax running maxima */
    double *sum;     /* (nt, max_batch) softmax partial normalisers */
    double *w;       /* (nt) merge weights */
};

struct objective *objective_new(const struct objective_config *cfg)
{
    if (cfg->max_batch < 1 || cfg->dim < 1 || cfg->n < 1 || !(cfg->tau > 0.0)
        || cfg->z_momentum < 0.0 || cfg->z_momentum > 1.0 || cfg->prox_lambda < 0.0
        || (cfg->z_mode != OBJ_Z_FROZEN && cfg->z_mode != OBJ_Z_EMA)) {
        log_error("objective: bad configuration (B %d, d %d, n %zu, tau %g)", cfg->max_batch,
                  cfg->dim, cfg->n, cfg->tau);
        return NULL;
    }
    struct objective *o = calloc(1, sizeof(*o));
    if (!o) return NULL;
    o->cfg = *cfg;
    o->nt = nn_team_size(cfg->team);
    size_t cols = cfg->m, mb = (size_t)cfg->max_batch, nt = (size_t)o->nt;
    if (cfg->softmax && nt * SOFTMAX_COLS > cols) cols = nt * SOFTMAX_COLS;
    if (cols < 1) cols = 1;
    o->scores_floats = mb * cols;
    o->scores = malloc(sizeof(float) * o->scores_floats);
    o->s0 = malloc(sizeof(float) * mb);
    o->gram = malloc(sizeof(float) * mb * mb);
    o->acc = malloc(sizeof(float) * nt * mb * (size_t)cfg->dim);
    o->mx = malloc(sizeof(float) * nt * mb);
    o->sum = malloc(sizeof(double) * nt * mb);
    o->w = malloc(sizeof(double) * nt);
    if (!o->scores || !o->s0 || !o->gram || !o->acc || !o->mx || !o->sum || !o->w) {
        log_error("objective: cannot allocate %zu scores", o->scores_floats);
        objective_destroy(&o);
        return NULL;
    }
    return o;
}

void objective_destroy(struct objective **op)
{
    if (!op || !*op) return;
    free((*op)->scores);
    free((*op)->s0);
    free((*op)->gram);
    free((*op)->acc);
    free((*op)->mx);
    free((*op)->sum);
    free((*op)->w);
    free(*op);
    *op = NULL;
}

double objective_z(const struct objective *o) { return o->z; }
double objective_z_estimate(const struct objective *o) { return o->z_est; }

void objective_set_z(struct objective *o, double z)
{
    NPID_CHECK(z > 0.0);
    o->z = z;
    o->z_set = 1;
}

static float dotf(const float *a, const float *b, int d)
{
    float s = 0.0f;
    for (int j = 0; j < d; j++) s += a[j] * b[j];
    return s;
}

/* Adds the proximal term for pos (B, d) to df; returns its loss. */
static double objective_prox(const struct objective *o, const float *f, const float *pos,
                             int B, float *df)
{
    double lam = o->cfg.prox_lambda, sum = 0.0;
    if (lam <= 0.0) return 0.0;
    int d = o->cfg.dim;
    float g = (float)(2.0 * lam / B);
    for (size_t i = 0; i < (size_t)B * d; i++) {
        float diff = f[i] - pos[i];
        sum += (double)diff * diff;
        df[i] += g * diff;
    }
    return lam * sum / B;
}

/* Given the raw scores s0 (B) of the positives and S (B, m) of the negatives, returns the
 * NCE loss and replaces them by dL/ds0 and dL/dS in place; estimates and updates Z. */
static double objective_nce_core(struct objective *o, float *s0, float *S, int B)
{
    size_t m = o->cfg.m;
    double n = (double)o->cfg.n, inv_tau = 1.0 / o->cfg.tau;
    /* the Z estimate of this call: n * mean(exp(s/tau)) over B x (m+1) */
    double esum = 0.0;
    for (int i = 0; i < B; i++) {
        esum += exp(s0[i] * inv_tau);
        const float *row = S + (size_t)i * m;
        double r = 0.0;
        for (size_t j = 0; j < m; j++) r += expf((float)(row[j] * inv_tau));
        esum += r;
    }
    o->z_est = n * esum / ((double)B * (double)(m + 1));
    if (!o->z_set) {
        o->z = o->z_est;
        o->z_set = 1;
    }
    double z = o->z;
    double c = (double)m / n, ce = c + NCE_EPS;
    float inv_z = (float)(1.0 / z), cef = (float)ce, tauf = (float)o->cfg.tau;
    float invtf = (float)inv_tau, gscale = (float)(1.0 / B);
    double loss = 0.0;
    for (int i = 0; i < B; i++) {
        double p0 = exp(s0[i] * inv_tau) / z;
        loss -= log(p0 / (p0 + ce));
        /* dL/ds0 = dL/dP * P/tau = -(c+eps)/(B (P + c + eps)) / tau */
        s0[i] = (float)(-ce / (B * (p0 + ce)) / o->cfg.tau);
        float *row = S + (size_t)i * m;
        double r = 0.0;
        for (size_t j = 0; j < m; j++) {
            float p = expf(row[j] * invtf) * inv_z;
            float den = p + cef;
            r += log(c / den);
            /* dL/ds = 1/(B (P + c + eps)) * P/tau */
            row[j] = gscale * p / (den * tauf);
        }
        loss -= r;
    }
    if (o->cfg.z_mode == OBJ_Z_EMA)
        o->z = o->cfg.z_momentum * o->z + (1.0 - o->cfg.z_momentum) * o->z_est;
    return loss / B;
}

static double nce_shared_impl(struct objective *o, const float *f, const float *pos,
                            const float *neg, int B, float *df)
{
    /* f (B,d) pos (B,d) neg (m,d) S (B,m) df (B,d) */
    NPID_CHECK(B >= 1 && B <= o->cfg.max_batch && o->cfg.m >= 1);
    int d = o->cfg.dim, m = (int)o->cfg.m;
    float *S = o->scores;
    float *s0 = o->s0;
    for (int i = 0; i < B; i++) s0[i] = dotf(f + (size_t)i * d, pos + (size_t)i * d, d);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, m, d, 1.0f, f, d, neg, d, 0.0f, S,
                m);
    double loss = objective_nce_core(o, s0, S, B);
    /* df = dS (B,m) neg (m,d) + ds0 * pos */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, d, m, 1.0f, S, m, neg, d, 0.0f,
                df, d);
    for (int i = 0; i < B; i++)
        for (int j = 0; j < d; j++) df[(size_t)i * d + j] += s0[i] * pos[(size_t)i * d + j];
    return loss + objective_prox(o, f, pos, B, df);
}

static double nce_per_element_impl(struct objective *o, const float *f, const float *pos,
                                 const float *neg, int B, float *df)
{
    /* f (B,d) pos (B,d) neg (B,m,d) S (B,m) df (B,d) */
    NPID_CHECK(B >= 1 && B <= o->cfg.max_batch && o->cfg.m >= 1);
    int d = o->cfg.dim, m = (int)o->cfg.m;
    float *S = o->scores;
    float *s0 = o->s0;
    for (int i = 0; i < B; i++) {
        s0[i] = dotf(f + (size_t)i * d, pos + (size_t)i * d, d);
        cblas_sgemv(CblasRowMajor, CblasNoTrans, m, d, 1.0f, neg + (size_t)i * m * d, d,
                    f + (size_t)i * d, 1, 0.0f, S + (size_t)i * m, 1);
    }
    double loss = objective_nce_core(o, s0, S, B);
    for (int i = 0; i < B; i++) {
        float *dfi = df + (size_t)i * d;
        cblas_sgemv(CblasRowMajor, CblasTrans, m, d, 1.0f, neg + (size_t)i * m * d, d,
                    S + (size_t)i * m, 1, 0.0f, dfi, 1);
        for (int j = 0; j < d; j++) dfi[j] += s0[i] * pos[(size_t)i * d + j];
    }
    return loss + objective_prox(o, f, pos, B, df);
}

struct softmax_job {
    struct objective *o;
    const float *f, *bank;
    int B;
};

static float row_max(const float *x, int n)
{
    float m = x[0];
    int j = 0;
    if (n >= 16) {
        v16f vm = v16_load(x);
        for (j = 16; j + 16 <= n; j += 16) {
            v16f v = v16_load(x + j);
            vm = (v16f)(((v16i)v & (v > vm)) | ((v16i)vm & ~(v > vm)));
        }
        for (int l = 0; l < 16; l++) m = vm[l] > m ? vm[l] : m;
    }
    for (; j < n; j++) m = x[j] > m ? x[j] : m;
    return m;
}

/* x[j] = exp(x[j] - m) in place; returns their sum */
static double row_exp(float *x, int n, float m)
{
    v16f vm = v16_set1(m), acc = { 0 };
    int j = 0;
    for (; j + 16 <= n; j += 16) {
        v16f e = v16_exp(v16_load(x + j) - vm);
        v16_store(x + j, e);
        acc += e;
    }
    double sum = v16_hsum(acc);
    if (j < n) {
        float t[16];
        for (int l = 0; l < 16; l++) t[l] = j + l < n ? x[j + l] : m;
        v16f e = v16_exp(v16_load(t) - vm);
        for (int l = 0; j + l < n; l++) {
            x[j + l] = e[l];
            sum += e[l];
        }
    }
    return sum;
}

/* InfoNCE without the proximal term; leaves dL/d(f_i . pos_i) in o->s0[i]. */
static double infonce_core(struct objective *o, const float *f, const float *pos,
                           const float *neg, int B, float *df)
{
    /* f (B,d) pos (B,d) neg (m,d) S (B,m) scores / tau, then dL/dS; df (B,d) */
    NPID_CHECK(B >= 1 && B <= o->cfg.max_batch && o->cfg.m >= 1);
    int d = o->cfg.dim, m = (int)o->cfg.m;
    float *S = o->scores;
    float *s0 = o->s0;
    float inv_tau = (float)(1.0 / o->cfg.tau);
    for (int i = 0; i < B; i++)
        s0[i] = dotf(f + (size_t)i * d, pos + (size_t)i * d, d) * inv_tau;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, m, d, inv_tau, f, d, neg, d, 0.0f,
                S, m);
    /* loss_i = log(e^{s0} + sum_j e^{s_j}) - s0; dL/ds0 = (p0 - 1)/(tau B),
     * dL/ds_j = p_j/(tau B) with p the softmax over the m + 1 scores */
    double loss = 0.0;
    for (int i = 0; i < B; i++) {
        float *row = S + (size_t)i * m;
        float mx = row_max(row, m);
        mx = s0[i] > mx ? s0[i] : mx;
        double e0 = exp((double)s0[i] - mx);
        double z = e0 + row_exp(row, m, mx);
        loss += log(z) + mx - s0[i];
        float g = (float)(inv_tau / (z * B));
        for (int j = 0; j < m; j++) row[j] *= g;
        s0[i] = (float)((e0 / z - 1.0) * inv_tau / B);
    }
    /* df = dS (B,m) neg (m,d) + ds0 * pos */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, d, m, 1.0f, S, m, neg, d, 0.0f,
                df, d);
    for (int i = 0; i < B; i++)
        for (int j = 0; j < d; j++) df[(size_t)i * d + j] += s0[i] * pos[(size_t)i * d + j];
    return loss / B;
}

static double infonce_shared_impl(struct objective *o, const float *f, const float *pos,
                                  const float *neg, int B, float *df)
{
    double loss = infonce_core(o, f, pos, neg, B, df);
    return loss + objective_prox(o, f, pos, B, df);
}

/* Two views: rows k and partner(k) = (k + B) mod 2B are each other's positive; the negatives
 * of row k are the m bank rows and the other 2B - 2 rows of the batch (self excluded). With
 * S = f neg^T / tau and G = f f^T / tau, P the softmax of row k over [G_k (no self), S_k]:
 * dL/df = (A + A^T) f + C neg, A_kl = (P_kl - [l = partner(k)]) / (tau 2B), A_kk = 0,
 * C_kj = P_kj / (tau 2B) (each feature is a query, and a key of the other rows). */
static double infonce_views_impl(struct objective *o, const float *f, const float *neg, int B,
                                 float *df)
{
    /* f (2B,d) neg (m,d) df (2B,d) S (2B,m) G (2B,2B) */
    NPID_CHECK(B >= 1 && 2 * B <= o->cfg.max_batch && o->cfg.m >= 1);
    int d = o->cfg.dim, m = (int)o->cfg.m, n2 = 2 * B;
    float *S = o->scores, *G = o->gram;
    float inv_tau = (float)(1.0 / o->cfg.tau);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n2, m, d, inv_tau, f, d, neg, d, 0.0f,
                S, m);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n2, n2, d, inv_tau, f, d, f, d, 0.0f,
                G, n2);
    double loss = 0.0;
    for (int k = 0; k < n2; k++) {
        float *s = S + (size_t)k * m, *g = G + (size_t)k * n2;
        int p = (k + B) % n2;
        float s0 = g[p];
        g[k] = -INFINITY; /* v16_exp clamps: exp(-inf) is below 1e-37, then set to 0 */
        float mx = row_max(s, m), mg = row_max(g, n2);
        mx = mg > mx ? mg : mx;
        double z = row_exp(s, m, mx) + row_exp(g, n2, mx) - (double)g[k];
        g[k] = 0.0f;
        loss += log(z) + mx - s0;
        float c = (float)(inv_tau / (z * n2));
        for (int j = 0; j < m; j++) s[j] *= c;
        for (int l = 0; l < n2; l++) g[l] *= c;
        g[p] -= inv_tau / (float)n2;
    }
    /* df = C neg + A f + A^T f */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n2, d, m, 1.0f, S, m, neg, d, 0.0f,
                df, d);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n2, d, n2, 1.0f, G, n2, f, d, 1.0f,
                df, d);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n2, d, n2, 1.0f, G, n2, f, d, 1.0f,
                df, d);
    return loss / n2;
}

/* Thread tid's share of the softmax: bank rows [n tid/nt, n (tid+1)/nt) in blocks, with a
 * running maximum per batch row (flash-attention style): mx_i, sum_i = sum_j exp(s_ij - mx_i)
 * and acc_i = sum_j exp(s_ij - mx_i) bank_j, rescaled whenever mx_i grows. */
static void softmax_part(void *arg, int tid)
{
    struct softmax_job *jb = arg;
    struct objective *o = jb->o;
    int B = jb->B, d = o->cfg.dim, mb = o->cfg.max_batch;
    size_t n = o->cfg.n;
    size_t c0 = n * (size_t)tid / (size_t)o->nt, c1 = n * (size_t)(tid + 1) / (size_t)o->nt;
    float *S = o->scores + (size_t)tid * (size_t)mb * SOFTMAX_COLS;
    float *acc = o->acc + (size_t)tid * (size_t)mb * d;
    float *mx = o->mx + (size_t)tid * mb;
    double *sum = o->sum + (size_t)tid * mb;
    float inv_tau = (float)(1.0 / o->cfg.tau);
    if (c0 >= c1) { /* fewer rows than threads: an empty share, weight 0 in the merge */
        for (int i = 0; i < B; i++) {
            mx[i] = -INFINITY;
            sum[i] = 0.0;
        }
        memset(acc, 0, sizeof(float) * (size_t)B * (size_t)d);
        return;
    }
    for (size_t b0 = c0; b0 < c1; b0 += SOFTMAX_COLS) {
        int nc = (int)(c1 - b0 < SOFTMAX_COLS ? c1 - b0 : SOFTMAX_COLS);
        const float *rows = jb->bank + b0 * (size_t)d;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, nc, d, inv_tau, jb->f, d, rows,
                    d, 0.0f, S, nc);
        for (int i = 0; i < B; i++) {
            float *s = S + (size_t)i * nc;
            float m = row_max(s, nc);
            if (b0 == c0) {
                mx[i] = m;
                sum[i] = 0.0;
            } else if (m > mx[i]) {
                float r = expf(mx[i] - m);
                sum[i] *= r;
                for (int k = 0; k < d; k++) acc[(size_t)i * d + k] *= r;
                mx[i] = m;
            }
            sum[i] += row_exp(s, nc, mx[i]);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, d, nc, 1.0f, S, nc, rows, d,
                    b0 == c0 ? 0.0f : 1.0f, acc, d);
    }
}

static double softmax_impl(struct objective *o, const float *f, const float *bank,
                           const uint32_t *idx, int B, float *df)
{
    /* f (B,d) bank (n,d) df (B,d) */
    NPID_CHECK(B >= 1 && B <= o->cfg.max_batch && o->cfg.softmax);
    int d = o->cfg.dim, mb = o->cfg.max_batch, nt = o->nt;
    size_t n = o->cfg.n;
    for (int i = 0; i < B; i++) NPID_CHECK(idx[i] < n);
    struct softmax_job jb = { o, f, bank, B };
    if (nt > 1)
        nn_team_run(o->cfg.team, softmax_part, &jb);
    else
        softmax_part(&jb, 0);
    /* merge the threads' parts: loss_i = log sum_j exp(s_ij) - s_i,idx_i,
     * dL/df_i = (sum_j p_ij bank_j - bank_idx_i) / (tau B) */
    double inv_tau = 1.0 / o->cfg.tau, loss = 0.0;
    for (int i = 0; i < B; i++) {
        float top = -INFINITY;
        for (int t = 0; t < nt; t++) {
            float m = o->mx[(size_t)t * mb + i];
            top = m > top ? m : top;
        }
        double z = 0.0;
        for (int t = 0; t < nt; t++) {
            o->w[t] = exp((double)o->mx[(size_t)t * mb + i] - top);
            z += o->w[t] * o->sum[(size_t)t * mb + i];
        }
        const float *fi = f + (size_t)i * d, *pos = bank + (size_t)idx[i] * d;
        double target = 0.0;
        for (int k = 0; k < d; k++) target += (double)fi[k] * pos[k];
        loss += log(z) + top - target * inv_tau;
        float *g = df + (size_t)i * d;
        for (int k = 0; k < d; k++) {
            double a = 0.0;
            for (int t = 0; t < nt; t++)
                if (o->w[t] > 0.0) a += o->w[t] * o->acc[((size_t)t * mb + i) * d + k];
            g[k] = (float)((a / z - pos[k]) * inv_tau / B);
        }
    }
    loss /= B;
    if (o->cfg.prox_lambda > 0.0) {
        /* pos_i is bank row idx_i, read in place */
        double lam = o->cfg.prox_lambda, psum = 0.0;
        float g = (float)(2.0 * lam / B);
        for (int i = 0; i < B; i++) {
            const float *p = bank + (size_t)idx[i] * d;
            for (int j = 0; j < d; j++) {
                float diff = f[(size_t)i * d + j] - p[j];
                psum += (double)diff * diff;
                df[(size_t)i * d + j] += g * diff;
            }
        }
        loss += lam * psum / B;
    }
    return loss;
}

double objective_nce_shared(struct objective *o, const float *f, const float *pos,
                            const float *neg, int B, float *df)
{
    int prev = openblas_get_num_threads();
    openblas_set_num_threads(1);
    double loss = nce_shared_impl(o, f, pos, neg, B, df);
    openblas_set_num_threads(prev);
    return loss;
}

double objective_nce_per_element(struct objective *o, const float *f, const float *pos,
                                 const float *neg, int B, float *df)
{
    int prev = openblas_get_num_threads();
    openblas_set_num_threads(1);
    double loss = nce_per_element_impl(o, f, pos, neg, B, df);
    openblas_set_num_threads(prev);
    return loss;
}

double objective_infonce_shared(struct objective *o, const float *f, const float *pos,
                                const float *neg, int B, float *df)
{
    int prev = openblas_get_num_threads();
    openblas_set_num_threads(1);
    double loss = infonce_shared_impl(o, f, pos, neg, B, df);
    openblas_set_num_threads(prev);
    return loss;
}

double objective_infonce_views(struct objective *o, const float *f, const float *neg, int B,
                               float *df)
{
    int prev = openblas_get_num_threads();
    openblas_set_num_threads(1);
    double loss = infonce_views_impl(o, f, neg, B, df);
    openblas_set_num_threads(prev);
    return loss;
}

void objective_views_mean(const float *f, int B, int dim, float *out)
{
    /* f (2B,d) out (B,d) */
    size_t d = (size_t)dim;
    for (size_t i = 0; i < (size_t)B; i++) {
        const float *a = f + i * d, *b = f + ((size_t)B + i) * d;
        float *o = out + i * d;
        double norm = 0.0;
        for (size_t k = 0; k < d; k++) {
            o[k] = a[k] + b[k];
            norm += (double)o[k] * o[k];
        }
        float inv = norm > 0.0 ? (float)(1.0 / sqrt(norm)) : 0.0f;
        for (size_t k = 0; k < d; k++) o[k] *= inv;
    }
}

double objective_softmax(struct objective *o, const float *f, const float *bank,
                         const uint32_t *idx, int B, float *df)
{
    int prev = openblas_get_num_threads();
    openblas_set_num_threads(1);
    double loss = softmax_impl(o, f, bank, idx, B, df);
    openblas_set_num_threads(prev);
    return loss;
}
