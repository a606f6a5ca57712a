/* Direct 3x3 pad-1 convolution kernels, stride 1 and 2 (see conv3x3.h). */
#include "common/nn/conv3x3.h"

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "common/cpu.h"
#include "common/log.h"
#include "common/nn/conv.h"

/* Positions per tile: forward tiles keep C channel rows of the tile in L2 while every block
 * of 8 output channels sweeps them; weight-gradient tiles are longer because each tile ends
 * in one horizontal sum per accumulator (2 or 3 output channels x 9 taps per input channel),
 * and are cut to 2048 past 64 output channels so that the tile's K rows of dout, read again
 * for every input channel, stay near 1 MB. */
#define CONV3_FWD_TILE 1024

static size_t conv3x3_dw_tile(int K)
{
    return K <= 64 ? 4096 : 2048;
}

static size_t conv3x3_round16(size_t n)
{
    return (n + 15) & ~(size_t)15;
}

/* Halo of a copied tile on either side: one output row and one pixel, in whole chunks. */
static size_t conv3x3_halo(int Wo)
{
    return conv3x3_round16((size_t)Wo + 1);
}

/* Channel stride of a copied tile: the tile, both halos and 16 floats, so that successive
 * channels start 64 bytes apart in cache-set terms rather than on the same set. */
static size_t conv3x3_buf_stride(size_t tile, int Wo)
{
    return tile + 2 * conv3x3_halo(Wo) + 16;
}

/* Chunks the lane-mask table holds: one output image when its positions are a whole number
 * of chunks (the table then repeats image after image), else one tile. */
static size_t conv3x3_mask_chunks(size_t ohw, size_t tile)
{
    return ohw % 16 == 0 ? ohw / 16 : tile / 16;
}

static size_t conv3x3_mask_floats(size_t ohw, size_t tile)
{
    return conv3x3_round16((conv3x3_mask_chunks(ohw, tile) * 9 + 1) / 2);
}

/* Row stride of the weight gradient's aligned input rows: a chunk before and two after. */
static size_t conv3x3_dw_row(size_t tile)
{
    return tile + 48;
}

size_t conv3x3_scratch(const struct conv *c, int H, int W)
{
    int ho = conv_out_dim(H, 3, c->stride, 1), wo = conv_out_dim(W, 3, c->stride, 1);
    size_t ohw = (size_t)ho * wo, phases = c->stride == 2 ? 4 : 1;
    size_t kp = (size_t)(c->K + 7) & ~(size_t)7, cp = (size_t)(c->C + 7) & ~(size_t)7;
    size_t bs = conv3x3_buf_stride(CONV3_FWD_TILE, wo);
    size_t fwd = 16 + conv3x3_round16(kp * c->C * 9) + conv3x3_mask_floats(ohw, CONV3_FWD_TILE)
                 + phases * c->C * bs;
    size_t bwd = 16 + conv3x3_round16(cp * c->K * 9) + conv3x3_mask_floats(ohw, CONV3_FWD_TILE)
                 + (size_t)c->K * bs + (phases > 1 ? 8 * 4 * CONV3_FWD_TILE : 0);
    size_t dt = conv3x3_dw_tile(c->K);
    size_t dw = 32 + conv3x3_mask_floats(ohw, dt) + (size_t)c->K * (dt + 16)
                + (phases > 1 ? 4 * conv3x3_buf_stride(dt, wo) + 2 * conv3x3_dw_row(dt)
                              : 3 * conv3x3_dw_row(dt));
    size_t m = fwd > bwd ? fwd : bwd;
    return m > dw ? m : dw;
}

int conv3x3_available(const struct conv *c, int H, int W)
{
    if (cpu_isa() < CPU_ISA_AVX512) return 0;
    if (c->R != 3 || c->S != 3 || c->pad != 1) return 0;
    return c->stride == 1 || (c->stride == 2 && H % 2 == 0 && W % 2 == 0);
}

/* Everything below runs only where conv3x3_available() said 1. */
CPU_BEGIN_AVX512

/* p rounded up to 64 bytes (the scratch counts 16 floats for it) */
static float *conv3x3_align(float *p)
{
    return (float *)(void *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
}

/* m[j*9 + r*3 + s], j < nch: lanes of the chunk at output positions p0 + 16*j + lane
 * (counted from the start of a channel's run, p = b*H*W + h*W + w over an H x W output) that
 * lie before end and whose neighbour (h + r - 1, w + s - 1) lies inside the image. */
static void conv3x3_masks(size_t p0, size_t nch, size_t end, int H, int W, uint16_t *m)
{
    size_t hw = (size_t)H * W, q = p0 % hw, p = p0;
    int h = (int)(q / (size_t)W), w = (int)(q % (size_t)W);
    for (size_t j = 0; j < nch; j++) {
        unsigned row[3] = { 0, 0, 0 }, col[3] = { 0, 0, 0 };
        for (int l = 0; l < 16; l++, p++) {
            if (p < end) {
                unsigned bit = 1u << l;
                if (h > 0) row[0] |= bit;
                row[1] |= bit;
                if (h < H - 1) row[2] |= bit;
                if (w > 0) col[0] |= bit;
                col[1] |= bit;
                if (w < W - 1) col[2] |= bit;
            }
            if (++w == W) {
                w = 0;
                if (++h == H) h = 0;
            }
        }
        for (int r = 0; r < 3; r++)
            for (int s = 0; s < 3; s++) m[j * 9 + r * 3 + s] = (uint16_t)(row[r] & col[s]);
    }
}

/* The lane masks of a tile: a cursor into the table that wraps every period chunks. */
struct conv3x3_mcur { const uint16_t *base; size_t period, at; };

static inline const uint16_t *conv3x3_mnext(struct conv3x3_mcur *mc)
{
    const uint16_t *m = mc->base + mc->at * 9;
    if (++mc->at == mc->period) mc->at = 0;
    return m;
}

/* Copies positions [lo, hi) of n channels (stride cs) to buf (stride bs), where position t
 * lands at buf + halo. */
static void conv3x3_copy_tile(const float *in, size_t cs, int n, size_t t, size_t lo, size_t hi,
                              size_t halo, float *buf, size_t bs)
{
    for (int ch = 0; ch < n; ch++)
        memcpy(buf + (size_t)ch * bs + halo - (t - lo), in + (size_t)ch * cs + lo,
               sizeof(float) * (hi - lo));
}

/* Stride 2: the four phase planes of one input channel ic (B, H, W) at output resolution,
 * P[a*2 + b][q] = ic[bq, 2*oh + a, 2*ow + b] for output positions q = (bq, oh, ow) in
 * [lo, hi) of an Ho x Wo output; plane ab is written at pb + ab*ps + (q - t). */
static void conv3x3_phases(const float *ic, int H, int W, size_t t, size_t lo, size_t hi,
                           float *pb, size_t ps)
{
    int ho = H / 2, wo = W / 2;
    size_t ohw = (size_t)ho * wo, hw = (size_t)H * W;
    const __m512i eo = _mm512_set_epi32(15, 13, 11, 9, 7, 5, 3, 1, 14, 12, 10, 8, 6, 4, 2, 0);
    size_t q = lo;
    while (q < hi) {
        size_t bq = q / ohw, rem = q % ohw;
        int oh = (int)(rem / (size_t)wo), ow = (int)(rem % (size_t)wo);
        size_t seg = (size_t)(wo - ow) < hi - q ? (size_t)(wo - ow) : hi - q;
        for (int a = 0; a < 2; a++) {
            const float *src = ic + bq * hw + (size_t)(2 * oh + a) * W + 2 * (size_t)ow;
            float *d0 = pb + (size_t)(2 * a) * ps + (q - t), *d1 = d0 + ps;
            size_t j = 0;
            for (; j + 8 <= seg; j += 8) {
                __m512 v = _mm512_permutexvar_ps(eo, _mm512_loadu_ps(src + 2 * j));
                _mm512_mask_storeu_ps(d0 + j, 0x00ff, v);
                _mm512_mask_storeu_ps(d1 + j - 8, 0xff00, v);
            }
            for (; j < seg; j++) {
                d0[j] = src[2 * j];
                d1[j] = src[2 * j + 1];
            }
        }
        q += seg;
    }
}

/* Stride 2, input gradient: din channel dc (B, H, W) at the pixels of output positions
 * [t, te) (Ho x Wo), = (or += when accumulate) the phase planes at pb + ab*ps + (q - t). */
static void conv3x3_unphase(const float *pb, size_t ps, int H, int W, size_t t, size_t te,
                            float *dc, int accumulate)
{
    int ho = H / 2, wo = W / 2;
    size_t ohw = (size_t)ho * wo, hw = (size_t)H * W;
    const __m512i il = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    size_t q = t;
    while (q < te) {
        size_t bq = q / ohw, rem = q % ohw;
        int oh = (int)(rem / (size_t)wo), ow = (int)(rem % (size_t)wo);
        size_t seg = (size_t)(wo - ow) < te - q ? (size_t)(wo - ow) : te - q;
        for (int a = 0; a < 2; a++) {
            float *dst = dc + bq * hw + (size_t)(2 * oh + a) * W + 2 * (size_t)ow;
            const float *s0 = pb + (size_t)(2 * a) * ps + (q - t), *s1 = s0 + ps;
            size_t j = 0;
            for (; j + 8 <= seg; j += 8) {
                __m512 e = _mm512_castps256_ps512(_mm256_loadu_ps(s0 + j));
                __m512 o = _mm512_castps256_ps512(_mm256_loadu_ps(s1 + j));
                __m512 v = _mm512_permutex2var_ps(e, il, o);
                if (accumulate) v = _mm512_add_ps(v, _mm512_loadu_ps(dst + 2 * j));
                _mm512_storeu_ps(dst + 2 * j, v);
            }
            for (; j < seg; j++) {
                dst[2 * j] = (accumulate ? dst[2 * j] : 0.0f) + s0[j];
                dst[2 * j + 1] = (accumulate ? dst[2 * j + 1] : 0.0f) + s1[j];
            }
        }
        q += seg;
    }
}

/* The taps of one pass: tap i reads the input at offset off[i] (floats, from the output
 * position in the copied tile), with lane masks m[mask[i]], times weight tap w[i] (r*3+s). */
struct conv3x3_taps {
    int n;
    ptrdiff_t off[9];
    int mask[9], w[9];
};

/* Forward taps. Stride 1: the neighbour (r - 1, s - 1). Stride 2 (phase planes ps apart):
 * row 2*oh - 1 + r is phase a = (r != 1) at output row oh - (r == 0), columns alike. */
static void conv3x3_taps_fwd(struct conv3x3_taps *tp, int stride, int Wo, size_t ps)
{
    tp->n = 9;
    for (int rs = 0; rs < 9; rs++) {
        int r = rs / 3, s = rs % 3;
        int di = stride == 1 ? r - 1 : -(r == 0), dj = stride == 1 ? s - 1 : -(s == 0);
        size_t ab = stride == 1 ? 0 : (size_t)(2 * (r != 1) + (s != 1));
        tp->off[rs] = (ptrdiff_t)(ab * ps) + (ptrdiff_t)di * Wo + dj;
        tp->mask[rs] = (di + 1) * 3 + (dj + 1);
        tp->w[rs] = rs;
    }
}

/* Input-gradient taps over dout (Ho x Wo). Stride 1: din[p] takes dout[p - (r-1, s-1)].
 * Stride 2, phase ab of din: the taps with (r != 1, s != 1) == (a, b), din row 2*i + a
 * taking dout row i + (r == 0), columns alike. */
static void conv3x3_taps_bwd(struct conv3x3_taps *tp, int stride, int Wo, int ab)
{
    tp->n = 0;
    for (int rs = 0; rs < 9; rs++) {
        int r = rs / 3, s = rs % 3, di, dj;
        if (stride == 1) {
            di = 1 - r;
            dj = 1 - s;
        } else {
            if (2 * (r != 1) + (s != 1) != ab) continue;
            di = r == 0;
            dj = s == 0;
        }
        tp->off[tp->n] = (ptrdiff_t)di * Wo + dj;
        tp->mask[tp->n] = (di + 1) * 3 + (dj + 1);
        tp->w[tp->n] = rs;
        tp->n++;
    }
}

/* One register block of the forward kernel: 8 output channels x PB chunks. bp: the copied
 * input at the block's first position (channel stride cst); wk (9, Cin, 8) packed weights;
 * mk[pb]: the chunk's nine masks; out at the block's first position, channel stride os;
 * only the first nk output channels are stored. */
static inline __attribute__((always_inline)) void
conv3x3_fwd_block(const int PB, const float *bp, size_t cst, int Cin,
                  const struct conv3x3_taps *tp, const float *wk, const uint16_t *const *mk,
                  float *out, size_t os, int nk, int accumulate)
{
    __m512 acc[8][3];
#pragma GCC unroll 8
    for (int kk = 0; kk < 8; kk++)
#pragma GCC unroll 3
        for (int pb = 0; pb < PB; pb++) acc[kk][pb] = _mm512_setzero_ps();
    for (int ti = 0; ti < tp->n; ti++) {
        __mmask16 m[3];
#pragma GCC unroll 3
        for (int pb = 0; pb < PB; pb++) m[pb] = mk[pb][tp->mask[ti]];
        const float *ip = bp + tp->off[ti];
        const float *wp = wk + (size_t)tp->w[ti] * Cin * 8;
        for (int ch = 0; ch < Cin; ch++, ip += cst, wp += 8) {
            __m512 x[3];
#pragma GCC unroll 3
            for (int pb = 0; pb < PB; pb++) x[pb] = _mm512_maskz_loadu_ps(m[pb], ip + 16 * pb);
#pragma GCC unroll 8
            for (int kk = 0; kk < 8; kk++) {
                __m512 wv = _mm512_set1_ps(wp[kk]);
#pragma GCC unroll 3
                for (int pb = 0; pb < PB; pb++)
                    acc[kk][pb] = _mm512_fmadd_ps(wv, x[pb], acc[kk][pb]);
            }
        }
    }
#pragma GCC unroll 3
    for (int pb = 0; pb < PB; pb++) {
        __mmask16 m = mk[pb][4];
#pragma GCC unroll 8
        for (int kk = 0; kk < 8; kk++) {
            if (kk >= nk) break;
            float *o = out + (size_t)kk * os + 16 * pb;
            __m512 v = acc[kk][pb];
            if (accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, o));
            _mm512_mask_storeu_ps(o, m, v);
        }
    }
}

/* The blocks of 8 output channels [kb, kb + 8) over the nch chunks of a tile. */
static void conv3x3_fwd_sweep(const float *bp, size_t cst, int Cin,
                              const struct conv3x3_taps *tp, const float *wk,
                              struct conv3x3_mcur mc, size_t nch, float *out, size_t os, int nk,
                              int accumulate)
{
    size_t j = 0;
    for (; j + 3 <= nch; j += 3) {
        const uint16_t *mk[3];
        for (int pb = 0; pb < 3; pb++) mk[pb] = conv3x3_mnext(&mc);
        conv3x3_fwd_block(3, bp + 16 * j, cst, Cin, tp, wk, mk, out + 16 * j, os, nk, accumulate);
    }
    if (nch - j == 2) {
        const uint16_t *mk[2];
        for (int pb = 0; pb < 2; pb++) mk[pb] = conv3x3_mnext(&mc);
        conv3x3_fwd_block(2, bp + 16 * j, cst, Cin, tp, wk, mk, out + 16 * j, os, nk, accumulate);
    } else if (nch - j == 1) {
        const uint16_t *mk[1] = { conv3x3_mnext(&mc) };
        conv3x3_fwd_block(1, bp + 16 * j, cst, Cin, tp, wk, mk, out + 16 * j, os, nk, accumulate);
    }
}

/* Packs the weights for the forward kernel: wpk (Kpad/8, 9, Cin, 8), zero past Kout; the
 * transposed form swaps the roles of K and C (no flip: the taps carry the direction). */
static void conv3x3_pack(const struct conv *c, int transposed, float *wpk)
{
    int Cin = transposed ? c->K : c->C, Kout = transposed ? c->C : c->K;
    int kpad = (Kout + 7) & ~7;
    for (int k = 0; k < kpad; k++)
        for (int rs = 0; rs < 9; rs++)
            for (int ch = 0; ch < Cin; ch++) {
                float v = 0.0f;
                if (k < Kout)
                    v = transposed ? c->w[((size_t)ch * c->C + k) * 9 + rs]
                                   : c->w[((size_t)k * c->C + ch) * 9 + rs];
                wpk[(((size_t)(k / 8) * 9 + rs) * Cin + ch) * 8 + (k % 8)] = v;
            }
}

void conv3x3_forward(const struct conv *c, int transposed, const float *in, int B, int H, int W,
                     int b0, int b1, float *out, int accumulate, float *scratch,
                     size_t scratch_floats)
{
    /* forward: in (C, B, H, W) -> out (K, B, Ho, Wo); transposed: in = dout (K, B, Ho, Wo)
     * -> out = din (C, B, H, W). Tiles run over the Ho x Wo positions either way. */
    int st = c->stride, ho = conv_out_dim(H, 3, st, 1), wo = conv_out_dim(W, 3, st, 1);
    int Cin = transposed ? c->K : c->C, Kout = transposed ? c->C : c->K;
    size_t ohw = (size_t)ho * wo, hw = (size_t)H * W, start = (size_t)b0 * ohw,
           end = (size_t)b1 * ohw, ocs = (size_t)B * ohw, ics = (size_t)B * hw;
    if (b1 <= b0) return;
    size_t kpad = (size_t)(Kout + 7) & ~(size_t)7, halo = conv3x3_halo(wo);
    size_t bs = conv3x3_buf_stride(CONV3_FWD_TILE, wo);
    int periodic = ohw % 16 == 0, phased = st == 2 && !transposed;
    float *s = conv3x3_align(scratch);
    float *wpk = s;
    uint16_t *masks = (uint16_t *)(void *)(s + conv3x3_round16(kpad * Cin * 9));
    float *buf = (float *)(void *)masks + conv3x3_mask_floats(ohw, CONV3_FWD_TILE);
    float *tmp = buf + (size_t)Cin * bs * (phased ? 4 : 1);
    NPID_CHECK(tmp + (st == 2 && transposed ? 8 * 4 * CONV3_FWD_TILE : 0)
               <= scratch + scratch_floats);
    conv3x3_pack(c, transposed, wpk);
    if (periodic) conv3x3_masks(0, ohw / 16, ohw, ho, wo, masks);
    struct conv3x3_taps taps[4];
    if (!transposed) conv3x3_taps_fwd(&taps[0], st, wo, bs);
    else
        for (int ab = 0; ab < (st == 2 ? 4 : 1); ab++) conv3x3_taps_bwd(&taps[ab], st, wo, ab);
    /* the input of a tile: positions q in [t, te) read [t - halo, te + halo) */
    const float *src = in;
    size_t scs = transposed ? ocs : (st == 1 ? ics : 0);
    for (size_t t = start; t < end; t += CONV3_FWD_TILE) {
        size_t te = end - t < CONV3_FWD_TILE ? end : t + CONV3_FWD_TILE;
        size_t nch = (te - t + 15) / 16;
        size_t lo = t - start > halo ? t - halo : start, hi = end - te > halo ? te + halo : end;
        if (!periodic) conv3x3_masks(t, nch, te, ho, wo, masks);
        if (phased)
            for (int ch = 0; ch < Cin; ch++)
                conv3x3_phases(src + (size_t)ch * ics, H, W, t, lo, te,
                               buf + (size_t)ch * 4 * bs + halo, bs);
        else
            conv3x3_copy_tile(src, scs, Cin, t, lo, hi, halo, buf, bs);
        struct conv3x3_mcur mc = { masks, periodic ? ohw / 16 : nch,
                                   periodic ? (t / 16) % (ohw / 16) : 0 };
        size_t cst = phased ? 4 * bs : bs;
        for (size_t kb = 0; kb < kpad; kb += 8) {
            const float *wk = wpk + kb * Cin * 9;
            int nk = Kout - (int)kb < 8 ? Kout - (int)kb : 8;
            if (st == 1 || !transposed) {
                conv3x3_fwd_sweep(buf + halo, cst, Cin, &taps[0], wk, mc, nch,
                                  out + kb * ocs + t, ocs, nk, accumulate);
                continue;
            }
            /* stride-2 input gradient: four phase planes per channel, then interleaved */
            for (int ab = 0; ab < 4; ab++)
                conv3x3_fwd_sweep(buf + halo, cst, Cin, &taps[ab], wk, mc, nch,
                                  tmp + (size_t)ab * CONV3_FWD_TILE, 4 * CONV3_FWD_TILE, nk, 0);
            for (int kk = 0; kk < nk; kk++)
                conv3x3_unphase(tmp + (size_t)kk * 4 * CONV3_FWD_TILE, CONV3_FWD_TILE, H, W, t,
                                te, out + (kb + kk) * ics, accumulate);
        }
    }
}

/* The input channel's rows for the stride-1 weight gradient: xb + r*xs + i holds position
 * t + i + (r - 1)*W of ic (one channel's run) for i in [-16, n + 16), zero outside
 * [lo, hi). */
static void conv3x3_dw_rows(const float *ic, size_t t, size_t n, size_t lo, size_t hi, int W,
                            float *xb, size_t xs)
{
    for (int r = 0; r < 3; r++) {
        float *d = xb + (size_t)r * xs - 16;
        ptrdiff_t a = (ptrdiff_t)t - 16 + (ptrdiff_t)(r - 1) * W, b = a + (ptrdiff_t)n + 32;
        ptrdiff_t va = a > (ptrdiff_t)lo ? a : (ptrdiff_t)lo;
        ptrdiff_t vb = b < (ptrdiff_t)hi ? b : (ptrdiff_t)hi;
        if (vb <= va) {
            memset(d, 0, sizeof(float) * (size_t)(b - a));
            continue;
        }
        if (va > a) memset(d, 0, sizeof(float) * (size_t)(va - a));
        memcpy(d + (va - a), ic + va, sizeof(float) * (size_t)(vb - va));
        if (b > vb) memset(d + (vb - a), 0, sizeof(float) * (size_t)(b - vb));
    }
}

static inline __m512 conv3x3_shift(__mmask16 m, __m512 hi, __m512 lo, const int by)
{
    return _mm512_castsi512_ps(_mm512_maskz_alignr_epi32(m, _mm512_castps_si512(hi),
                                                         _mm512_castps_si512(lo), by));
}

/* One block of the weight gradient: KB output channels x one input channel x 9 taps over
 * the nch chunks of a tile. dp: the copied dout at the tile's first position (channel stride
 * ds, zero past the tile's end); rows[r][0..2]: aligned input rows for tap row r whose lane
 * i at chunk j is the tap's input for column s = 1 (rows[r][1]) or, shifted by one lane, for
 * s = 0 (rows[r][0], from its previous chunk) and s = 2 (rows[r][2], from its next chunk);
 * mi[r]: the mask row of tap row r. dwp[kk*ldw + rs] += the sums. Every load is aligned. */
static inline __attribute__((always_inline)) void
conv3x3_dw_block(const int KB, const int STRIDE, const float *dp, size_t ds,
                 const float *const (*rows)[3], struct conv3x3_mcur mc, size_t nch, float *dwp,
                 size_t ldw)
{
    __m512 acc[3][9];
#pragma GCC unroll 3
    for (int kk = 0; kk < KB; kk++)
#pragma GCC unroll 9
        for (int rs = 0; rs < 9; rs++) acc[kk][rs] = _mm512_setzero_ps();
    for (size_t j = 0; j < nch; j++, dp += 16) {
        const uint16_t *m = conv3x3_mnext(&mc);
        __m512 d[3];
#pragma GCC unroll 3
        for (int kk = 0; kk < KB; kk++) d[kk] = _mm512_loadu_ps(dp + (size_t)kk * ds);
#pragma GCC unroll 3
        for (int r = 0; r < 3; r++) {
            /* mask row: stride 1 row r - 1; stride 2 output row - (r == 0) */
            int mr = STRIDE == 1 ? r * 3 : (r == 0 ? 0 : 3);
            const float *x1p = rows[r][1] + 16 * j;
            __m512 x[3];
            __m512 c1 = _mm512_loadu_ps(x1p);
            x[1] = _mm512_maskz_mov_ps(m[mr + 1], c1);
            if (STRIDE == 1) {
                x[0] = conv3x3_shift(m[mr], c1, _mm512_loadu_ps(x1p - 16), 15);
                x[2] = conv3x3_shift(m[mr + 2], _mm512_loadu_ps(x1p + 16), c1, 1);
            } else {
                /* columns 2*ow - 1 + s: s = 2 is the odd phase at ow, s = 0 at ow - 1 */
                const float *x2p = rows[r][2] + 16 * j;
                __m512 c2 = _mm512_loadu_ps(x2p);
                x[2] = _mm512_maskz_mov_ps(m[mr + 1], c2);
                x[0] = conv3x3_shift(m[mr], c2, _mm512_loadu_ps(x2p - 16), 15);
            }
#pragma GCC unroll 3
            for (int s = 0; s < 3; s++)
#pragma GCC unroll 3
                for (int kk = 0; kk < KB; kk++)
                    acc[kk][r * 3 + s] = _mm512_fmadd_ps(d[kk], x[s], acc[kk][r * 3 + s]);
        }
    }
#pragma GCC unroll 3
    for (int kk = 0; kk < KB; kk++)
#pragma GCC unroll 9
        for (int rs = 0; rs < 9; rs++)
            dwp[(size_t)kk * ldw + rs] += _mm512_reduce_add_ps(acc[kk][rs]);
}

/* The weight-gradient blocks of one input channel over all K output channels: 2 output
 * channels per block for stride 1 (3 would spill accumulators: the compiler keeps each row's
 * neighbouring chunks in registers), 3 for stride 2. */
static void conv3x3_dw_sweep(int stride, int K, const float *dbuf, size_t ds,
                             const float *const (*rows)[3], struct conv3x3_mcur mc, size_t nch,
                             float *dwc, size_t ldw)
{
    int step = stride == 1 ? 2 : 3;
    for (int kb = 0; kb < K; kb += step) {
        const float *dp = dbuf + (size_t)kb * ds;
        float *dwp = dwc + (size_t)kb * ldw;
        int n = K - kb < step ? K - kb : step;
        if (stride == 1) {
            if (n == 2) conv3x3_dw_block(2, 1, dp, ds, rows, mc, nch, dwp, ldw);
            else conv3x3_dw_block(1, 1, dp, ds, rows, mc, nch, dwp, ldw);
        } else {
            if (n == 3) conv3x3_dw_block(3, 2, dp, ds, rows, mc, nch, dwp, ldw);
            else if (n == 2) conv3x3_dw_block(2, 2, dp, ds, rows, mc, nch, dwp, ldw);
            else conv3x3_dw_block(1, 2, dp, ds, rows, mc, nch, dwp, ldw);
        }
    }
}

void conv3x3_weight_grad(const struct conv *c, const float *in, const float *dout, int B, int H,
                         int W, int b0, int b1, float *dw, float *scratch,
                         size_t scratch_floats)
{
    /* in (C, B, H, W) dout (K, B, Ho, Wo) dw (K, C, 3, 3) */
    int C = c->C, K = c->K, st = c->stride;
    int ho = conv_out_dim(H, 3, st, 1), wo = conv_out_dim(W, 3, st, 1);
    size_t ohw = (size_t)ho * wo, hw = (size_t)H * W, ocs = (size_t)B * ohw,
           ics = (size_t)B * hw, start = (size_t)b0 * ohw, end = (size_t)b1 * ohw,
           ldw = (size_t)C * 9;
    memset(dw, 0, sizeof(float) * conv_weight_count(c));
    if (b1 <= b0) return;
    int periodic = ohw % 16 == 0;
    size_t tile = conv3x3_dw_tile(K);
    size_t ds = tile + 16, xs = conv3x3_dw_row(tile), halo = conv3x3_halo(wo);
    size_t ps = conv3x3_buf_stride(tile, wo);
    float *s = conv3x3_align(scratch);
    uint16_t *masks = (uint16_t *)(void *)s;
    float *dbuf = s + conv3x3_mask_floats(ohw, tile);
    float *xb = dbuf + (size_t)K * ds + 16;
    float *pbuf = xb + (st == 1 ? 3 : 2) * xs;
    NPID_CHECK(pbuf + (st == 1 ? 0 : 4 * ps) <= scratch + scratch_floats);
    if (periodic) conv3x3_masks(0, ohw / 16, ohw, ho, wo, masks);
    const float *rows[3][3];
    for (size_t t = start; t < end; t += tile) {
        size_t te = end - t < tile ? end : t + tile;
        size_t nch = (te - t + 15) / 16;
        if (!periodic) conv3x3_masks(t, nch, te, ho, wo, masks);
        for (int k = 0; k < K; k++) {
            float *d = dbuf + (size_t)k * ds;
            memcpy(d, dout + (size_t)k * ocs + t, sizeof(float) * (te - t));
            memset(d + (te - t), 0, sizeof(float) * (nch * 16 - (te - t)));
        }
        struct conv3x3_mcur mc = { masks, periodic ? ohw / 16 : nch,
                                   periodic ? (t / 16) % (ohw / 16) : 0 };
        /* stride 1 reads the input rows in place when they are chunk-aligned and the
         * chunks before and after the tile's rows lie inside the channel's run */
        int in_place = W % 16 == 0 && t >= (size_t)W + 16
                       && t + nch * 16 + (size_t)W + 16 <= ics;
        for (int ch = 0; ch < C; ch++) {
            if (st == 1 && in_place) {
                /* every tap is masked, so the rows may read neighbouring images */
                const float *ic = in + (size_t)ch * ics + t;
                for (int r = 0; r < 3; r++)
                    rows[r][0] = rows[r][1] = rows[r][2] = ic + (ptrdiff_t)(r - 1) * W;
            } else if (st == 1) {
                conv3x3_dw_rows(in + (size_t)ch * ics, t, nch * 16, start, end, W, xb, xs);
                for (int r = 0; r < 3; r++) rows[r][0] = rows[r][1] = rows[r][2] = xb + r * xs;
            } else {
                /* phase planes of the tile and one output row before it; tap row 0 reads
                 * the odd-row planes one output row up, copied to aligned rows */
                size_t lo = t - start > halo ? t - halo : start;
                float *pb = pbuf + halo;
                conv3x3_phases(in + (size_t)ch * ics, H, W, t, lo, te, pb, ps);
                for (int b = 0; b < 2; b++) {
                    float *row = xb + (size_t)b * xs;
                    memcpy(row - 16, pb + (2 + b) * ps - 16 - wo,
                           sizeof(float) * (nch * 16 + 16));
                }
                rows[0][1] = xb;
                rows[0][2] = xb + xs;
                rows[1][1] = pb;
                rows[1][2] = pb + ps;
                rows[2][1] = pb + 2 * ps;
                rows[2][2] = pb + 3 * ps;
            }
            conv3x3_dw_sweep(st, K, dbuf, ds, (const float *const (*)[3])rows, mc, nch,
                             dw + (size_t)ch * 9, ldw);
        }
    }
}

CPU_END
