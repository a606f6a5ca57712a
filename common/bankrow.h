/* The memory bank's row rule, written once: bankd applies it to its bank, the trainer to its
 * local mirror of the bank (the full softmax), so both hold the same bits.
 *
 *   row = normalise(a row + c f)        (update: a = momentum, c = 1 - momentum; set: 0, 1)
 *
 * in float for the mix, the norm and its inverse in double; a mix whose norm is below
 * BANKROW_MIN_NORM or not finite (f exactly opposite to row) falls back to normalise(f);
 * results below FLT_MIN are stored as 0 (rows never hold subnormals). f must be finite with
 * norm >= BANKROW_MIN_NORM (bankd checks that before writing). */
#ifndef NPID_BANKROW_H
#define NPID_BANKROW_H

#include <stddef.h>

#define BANKROW_MIN_NORM 1e-20

/* f: dim float32 values at any alignment (bankd reads them from a received frame). */
void bankrow_write(float *row, const void *f, size_t dim, float a, float c);

#endif
