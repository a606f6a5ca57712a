/* NCE and softmax objectives (see objective.h). Scores and probabilities are float;
 * reductions (loss, Z estimate, softmax normaliser) are double.
 *
 * The products here are small (B x m x d); they run with OpenBLAS on one thread (set and
 * restored around each call), because a multi-threaded call leaves an OpenBLAS worker
 * spinning for a while afterwards, stealing a core from the network's own threads. */
#include "trainer/objective.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

#define NCE_EPS 1e-7

struct objective {
    struct objective_config cfg;
    float *scores;   /* (max_batch, m) or (max_batch, n) for softmax */
    float *s0;       /* (max_batch) positive scores, then their gradients */
    size_t scores_floats;
    double z, z_est;
    int z_set;
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
    size_t cols = cfg->m;
    if (cfg->softmax && cfg->n > cols) cols = cfg->n;
    if (cols < 1) cols = 1;
    o->scores_floats = (size_t)cfg->max_batch * cols;
    o->scores = malloc(sizeof(float) * o->scores_floats);
    o->s0 = malloc(sizeof(float) * (size_t)cfg->max_batch);
    if (!o->scores || !o->s0) {
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

static double softmax_impl(struct objective *o, const float *f, const float *bank,
                         const uint32_t *idx, int B, float *df)
{
    /* f (B,d) bank (n,d) L (B,n) df (B,d) */
    NPID_CHECK(B >= 1 && B <= o->cfg.max_batch && o->cfg.softmax);
    int d = o->cfg.dim;
    size_t n = o->cfg.n;
    float *L = o->scores;
    float inv_tau = (float)(1.0 / o->cfg.tau);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, (int)n, d, inv_tau, f, d, bank, d,
                0.0f, L, (int)n);
    double loss = 0.0;
    for (int i = 0; i < B; i++) {
        NPID_CHECK(idx[i] < n);
        float *row = L + (size_t)i * n;
        float mx = row[0];
        for (size_t j = 1; j < n; j++) mx = row[j] > mx ? row[j] : mx;
        double sum = 0.0;
        for (size_t j = 0; j < n; j++) {
            row[j] = expf(row[j] - mx);
            sum += row[j];
        }
        loss -= log(row[idx[i]] / sum);
        /* dL/dlogit = (softmax - onehot)/B, then d logit/df = bank/tau */
        float k = (float)(1.0 / (sum * B)) * inv_tau;
        for (size_t j = 0; j < n; j++) row[j] *= k;
        row[idx[i]] -= inv_tau / B;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, d, (int)n, 1.0f, L, (int)n, bank,
                d, 0.0f, df, d);
    loss /= B;
    if (o->cfg.prox_lambda > 0.0) {
        /* pos_i is bank row idx_i, read in place */
        double lam = o->cfg.prox_lambda, sum = 0.0;
        float g = (float)(2.0 * lam / B);
        for (int i = 0; i < B; i++) {
            const float *p = bank + (size_t)idx[i] * d;
            for (int j = 0; j < d; j++) {
                float diff = f[(size_t)i * d + j] - p[j];
                sum += (double)diff * diff;
                df[(size_t)i * d + j] += g * diff;
            }
        }
        loss += lam * sum / B;
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

double objective_softmax(struct objective *o, const float *f, const float *bank,
                         const uint32_t *idx, int B, float *df)
{
    int prev = openblas_get_num_threads();
    openblas_set_num_threads(1);
    double loss = softmax_impl(o, f, bank, idx, B, df);
    openblas_set_num_threads(prev);
    return loss;
}
