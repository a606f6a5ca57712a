/* Direct 3x3 stride-1 pad-1 convolution kernels (see conv3x3.h). */
#include "common/nn/conv3x3.h"

#include <stdint.h>
#include <string.h>

#include "common/log.h"
#include "common/nn/conv.h"

/* Positions per tile: forward tiles keep C channel rows of the tile in L2 while every block
 * of 8 output channels sweeps them; weight-gradient tiles are longer because each tile ends
 * in 27 horizontal sums per (3 output channels, input channel). */
#define CONV3_FWD_TILE 1024
#define CONV3_DW_TILE 2048

static size_t conv3x3_round16(size_t n)
{
    return (n + 15) & ~(size_t)15;
}

/* p rounded up to 64 bytes (the scratch needs count 16 floats for it) */
static float *conv3x3_align(float *p)
{
    return (float *)(void *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
}

/* Halo of the copied tile on either side: one image row and one pixel, in whole chunks. */
static size_t conv3x3_halo(int W)
{
    return conv3x3_round16((size_t)W + 1);
}

/* Channel stride of the copied tile: the tile, both halos and 16 floats, so that successive
 * channels start 64 bytes apart in cache-set terms rather than on the same set. */
static size_t conv3x3_buf_stride(size_t tile, int W)
{
    return tile + 2 * conv3x3_halo(W) + 16;
}

/* Chunks the lane-mask table holds: one image when its positions are a whole number of
 * chunks (the table then repeats image after image), else one tile. */
static size_t conv3x3_mask_chunks(size_t hw, size_t tile)
{
    return hw % 16 == 0 ? hw / 16 : tile / 16;
}

static size_t conv3x3_mask_floats(size_t hw, size_t tile)
{
    return conv3x3_round16((conv3x3_mask_chunks(hw, tile) * 9 + 1) / 2);
}

size_t conv3x3_scratch(const struct conv *c, int H, int W)
{
    size_t hw = (size_t)H * W;
    size_t kp = (size_t)(c->K + 7) & ~(size_t)7, cp = (size_t)(c->C + 7) & ~(size_t)7;
    size_t fwd = conv3x3_round16(kp * c->C * 9) + conv3x3_mask_floats(hw, CONV3_FWD_TILE)
                 + (size_t)c->C * conv3x3_buf_stride(CONV3_FWD_TILE, W);
    size_t bwd = conv3x3_round16(cp * c->K * 9) + conv3x3_mask_floats(hw, CONV3_FWD_TILE)
                 + (size_t)c->K * conv3x3_buf_stride(CONV3_FWD_TILE, W);
    size_t dw = 16 + conv3x3_mask_floats(hw, CONV3_DW_TILE)
                + (size_t)c->K * (CONV3_DW_TILE + 16) + 16 + 3 * (CONV3_DW_TILE + 48);
    size_t m = fwd > bwd ? fwd : bwd;
    return m > dw ? m : dw;
}

#if defined(__AVX512F__)
#include <immintrin.h>

int conv3x3_available(const struct conv *c)
{
    return c->R == 3 && c->S == 3 && c->stride == 1 && c->pad == 1;
}

/* m[j*9 + r*3 + s], j < nch: lanes of the chunk at positions p0 + 16*j + lane (counted from
 * the start of a channel's run, p = b*H*W + h*W + w) that lie before end and whose tap
 * (h + r - 1, w + s - 1) lies inside the image. */
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

/* One register block of the forward kernel: 8 output channels x PB chunks. bp: the copied
 * input at the block's first position (channel stride bs); wk (9, Cin, 8) packed weights;
 * mk[pb]: the chunk's nine tap masks; out at the block's first position, channel stride os;
 * only the first nk output channels are stored. */
static inline __attribute__((always_inline)) void
conv3x3_fwd_block(const int PB, const float *bp, size_t bs, int Cin, const ptrdiff_t *off,
                  const float *wk, const uint16_t *const *mk, float *out, size_t os, int nk,
                  int accumulate)
{
    __m512 acc[8][3];
#pragma GCC unroll 8
    for (int kk = 0; kk < 8; kk++)
#pragma GCC unroll 3
        for (int pb = 0; pb < PB; pb++) acc[kk][pb] = _mm512_setzero_ps();
    for (int rs = 0; rs < 9; rs++) {
        __mmask16 m[3];
#pragma GCC unroll 3
        for (int pb = 0; pb < PB; pb++) m[pb] = mk[pb][rs];
        const float *ip = bp + off[rs];
        const float *wp = wk + (size_t)rs * Cin * 8;
        for (int ch = 0; ch < Cin; ch++, ip += bs, wp += 8) {
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

/* Packs the weights for the forward kernel: wpk (Kpad/8, 9, Cin, 8), zero past Kout. */
static void conv3x3_pack(const struct conv *c, int transposed, float *wpk)
{
    int Cin = transposed ? c->K : c->C, Kout = transposed ? c->C : c->K;
    int kpad = (Kout + 7) & ~7;
    for (int k = 0; k < kpad; k++)
        for (int rs = 0; rs < 9; rs++)
            for (int ch = 0; ch < Cin; ch++) {
                float v = 0.0f;
                if (k < Kout)
                    v = transposed ? c->w[((size_t)ch * c->C + k) * 9 + (8 - rs)]
                                   : c->w[((size_t)k * c->C + ch) * 9 + rs];
                wpk[(((size_t)(k / 8) * 9 + rs) * Cin + ch) * 8 + (k % 8)] = v;
            }
}

static void conv3x3_offsets(int W, ptrdiff_t *off)
{
    for (int rs = 0; rs < 9; rs++) off[rs] = (ptrdiff_t)(rs / 3 - 1) * W + (rs % 3 - 1);
}

void conv3x3_forward(const struct conv *c, int transposed, const float *in, int B, int H, int W,
                     int b0, int b1, float *out, int accumulate, float *scratch,
                     size_t scratch_floats)
{
    /* in (Cin, B, H, W) out (Kout, B, H, W); Cin, Kout = C, K (forward) or K, C (transposed) */
    int Cin = transposed ? c->K : c->C, Kout = transposed ? c->C : c->K;
    size_t hw = (size_t)H * W, cs = (size_t)B * hw, start = (size_t)b0 * hw,
           end = (size_t)b1 * hw;
    if (b1 <= b0) return;
    size_t kpad = (size_t)(Kout + 7) & ~(size_t)7;
    size_t nwp = conv3x3_round16(kpad * Cin * 9), halo = conv3x3_halo(W);
    size_t bs = conv3x3_buf_stride(CONV3_FWD_TILE, W);
    int periodic = hw % 16 == 0;
    float *wpk = scratch;
    uint16_t *masks = (uint16_t *)(void *)(scratch + nwp);
    float *buf = scratch + nwp + conv3x3_mask_floats(hw, CONV3_FWD_TILE);
    NPID_CHECK(buf + (size_t)Cin * bs <= scratch + scratch_floats);
    conv3x3_pack(c, transposed, wpk);
    if (periodic) conv3x3_masks(0, hw / 16, hw, H, W, masks);
    ptrdiff_t off[9];
    conv3x3_offsets(W, off);
    for (size_t t = start; t < end; t += CONV3_FWD_TILE) {
        size_t te = end - t < CONV3_FWD_TILE ? end : t + CONV3_FWD_TILE;
        size_t nch = (te - t + 15) / 16;
        size_t lo = t - start > halo ? t - halo : start, hi = end - te > halo ? te + halo : end;
        if (!periodic) conv3x3_masks(t, nch, te, H, W, masks);
        conv3x3_copy_tile(in, cs, Cin, t, lo, hi, halo, buf, bs);
        size_t m0 = periodic ? (t / 16) % (hw / 16) : 0, period = periodic ? hw / 16 : nch;
        for (size_t kb = 0; kb < kpad; kb += 8) {
            const float *wk = wpk + kb * Cin * 9;
            int nk = Kout - (int)kb < 8 ? Kout - (int)kb : 8;
            struct conv3x3_mcur mc = { masks, period, m0 };
            float *ob = out + kb * cs + t;
            const float *bp = buf + halo;
            size_t j = 0;
            for (; j + 3 <= nch; j += 3) {
                const uint16_t *mk[3];
                for (int pb = 0; pb < 3; pb++) mk[pb] = conv3x3_mnext(&mc);
                conv3x3_fwd_block(3, bp + 16 * j, bs, Cin, off, wk, mk, ob + 16 * j, cs, nk,
                                  accumulate);
            }
            if (nch - j == 2) {
                const uint16_t *mk[2];
                for (int pb = 0; pb < 2; pb++) mk[pb] = conv3x3_mnext(&mc);
                conv3x3_fwd_block(2, bp + 16 * j, bs, Cin, off, wk, mk, ob + 16 * j, cs, nk,
                                  accumulate);
            } else if (nch - j == 1) {
                const uint16_t *mk[1] = { conv3x3_mnext(&mc) };
                conv3x3_fwd_block(1, bp + 16 * j, bs, Cin, off, wk, mk, ob + 16 * j, cs, nk,
                                  accumulate);
            }
        }
    }
}

/* The input channel's rows for the weight gradient: xb + r*xs + i holds position
 * t + i + (r - 1)*W of in (channel stride-free pointer ic at position 0) for i in
 * [-16, n + 16), zero outside [lo, hi). */
static void conv3x3_dw_rows(const float *ic, size_t t, size_t n, size_t lo, size_t hi, int W,
                            float *xb, size_t xs)
{
    for (int r = 0; r < 3; r++) {
        float *d = xb + (size_t)r * xs - 16;
        ptrdiff_t a = (ptrdiff_t)t - 16 + (ptrdiff_t)(r - 1) * W, b = a + (ptrdiff_t)n + 32;
        ptrdiff_t va = a > (ptrdiff_t)lo ? a : (ptrdiff_t)lo, vb = b < (ptrdiff_t)hi ? b : (ptrdiff_t)hi;
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
 * ds, zero past the tile's end); xb, xs: the input channel's rows (conv3x3_dw_rows);
 * dwp[kk*ldw + rs] += the sums. The taps s = 0 and 2 are the aligned neighbours shifted
 * by one lane, so every load is aligned. */
static inline __attribute__((always_inline)) void
conv3x3_dw_block(const int KB, const float *dp, size_t ds, const float *xb, size_t xs,
                 struct conv3x3_mcur mc, size_t nch, float *dwp, size_t ldw)
{
    __m512 acc[3][9];
#pragma GCC unroll 3
    for (int kk = 0; kk < KB; kk++)
#pragma GCC unroll 9
        for (int rs = 0; rs < 9; rs++) acc[kk][rs] = _mm512_setzero_ps();
    for (size_t j = 0; j < nch; j++, dp += 16, xb += 16) {
        const uint16_t *m = conv3x3_mnext(&mc);
        __m512 d[3];
#pragma GCC unroll 3
        for (int kk = 0; kk < KB; kk++) d[kk] = _mm512_loadu_ps(dp + (size_t)kk * ds);
#pragma GCC unroll 3
        for (int r = 0; r < 3; r++) {
            const float *xp = xb + (size_t)r * xs;
            __m512 cur = _mm512_loadu_ps(xp), x[3];
            x[0] = conv3x3_shift(m[r * 3], cur, _mm512_loadu_ps(xp - 16), 15);
            x[1] = r == 1 ? cur : _mm512_maskz_mov_ps(m[r * 3 + 1], cur);
            x[2] = conv3x3_shift(m[r * 3 + 2], _mm512_loadu_ps(xp + 16), cur, 1);
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

void conv3x3_weight_grad(const struct conv *c, const float *in, const float *dout, int B, int H,
                         int W, int b0, int b1, float *dw, float *scratch,
                         size_t scratch_floats)
{
    /* in (C, B, H, W) dout (K, B, H, W) dw (K, C, 3, 3) */
    int C = c->C, K = c->K;
    size_t hw = (size_t)H * W, cs = (size_t)B * hw, start = (size_t)b0 * hw,
           end = (size_t)b1 * hw, ldw = (size_t)C * 9;
    memset(dw, 0, sizeof(float) * conv_weight_count(c));
    if (b1 <= b0) return;
    int periodic = hw % 16 == 0;
    size_t ds = CONV3_DW_TILE + 16, xs = CONV3_DW_TILE + 48;
    float *s = conv3x3_align(scratch);
    uint16_t *masks = (uint16_t *)(void *)s;
    float *dbuf = s + conv3x3_mask_floats(hw, CONV3_DW_TILE);
    float *xb = dbuf + (size_t)K * ds + 16;
    NPID_CHECK(xb + 3 * xs <= scratch + scratch_floats);
    if (periodic) conv3x3_masks(0, hw / 16, hw, H, W, masks);
    for (size_t t = start; t < end; t += CONV3_DW_TILE) {
        size_t te = end - t < CONV3_DW_TILE ? end : t + CONV3_DW_TILE;
        size_t nch = (te - t + 15) / 16;
        if (!periodic) conv3x3_masks(t, nch, te, H, W, masks);
        for (int k = 0; k < K; k++) {
            float *d = dbuf + (size_t)k * ds;
            memcpy(d, dout + (size_t)k * cs + t, sizeof(float) * (te - t));
            memset(d + (te - t), 0, sizeof(float) * (nch * 16 - (te - t)));
        }
        struct conv3x3_mcur mc = { masks, periodic ? hw / 16 : nch,
                                   periodic ? (t / 16) % (hw / 16) : 0 };
        for (int ch = 0; ch < C; ch++) {
            conv3x3_dw_rows(in + (size_t)ch * cs, t, nch * 16, start, end, W, xb, xs);
            for (int kb = 0; kb < K; kb += 3) {
                const float *dp = dbuf + (size_t)kb * ds;
                float *dwp = dw + (size_t)kb * ldw + (size_t)ch * 9;
                if (K - kb >= 3) conv3x3_dw_block(3, dp, ds, xb, xs, mc, nch, dwp, ldw);
                else if (K - kb == 2) conv3x3_dw_block(2, dp, ds, xb, xs, mc, nch, dwp, ldw);
                else conv3x3_dw_block(1, dp, ds, xb, xs, mc, nch, dwp, ldw);
            }
        }
    }
}

#else

int conv3x3_available(const struct conv *c)
{
    (void)c;
    return 0;
}

void conv3x3_forward(const struct conv *c, int transposed, const float *in, int B, int H, int W,
                     int b0, int b1, float *out, int accumulate, float *scratch,
                     size_t scratch_floats)
{
    (void)c, (void)transposed, (void)in, (void)B, (void)H, (void)W, (void)b0, (void)b1;
    (void)out, (void)accumulate, (void)scratch, (void)scratch_floats;
    NPID_CHECK(!"conv3x3_forward without AVX-512F");
}

void conv3x3_weight_grad(const struct conv *c, const float *in, const float *dout, int B, int H,
                         int W, int b0, int b1, float *dw, float *scratch,
                         size_t scratch_floats)
{
    (void)c, (void)in, (void)dout, (void)B, (void)H, (void)W, (void)b0, (void)b1, (void)dw;
    (void)scratch, (void)scratch_floats;
    NPID_CHECK(!"conv3x3_weight_grad without AVX-512F");
}

#endif
