/* The memory bank's row rule (see bankrow.h). */
#include "common/bankrow.h"

#include <float.h>
#include <math.h>
#include <string.h>

void bankrow_write(float *row, const void *f, size_t dim, float a, float c)
{
    const char *fb = f;
    float tmp[256];
    float *x = dim <= 256 ? tmp : row; /* large dims mix in place */
    double ss = 0;
    for (size_t j = 0; j < dim; j++) {
        float fj;
        memcpy(&fj, fb + 4 * j, 4);
        x[j] = a * row[j] + c * fj;
        ss += (double)x[j] * x[j];
    }
    if (!(sqrt(ss) >= BANKROW_MIN_NORM) || !isfinite(ss)) {
        ss = 0;
        for (size_t j = 0; j < dim; j++) {
            memcpy(&x[j], fb + 4 * j, 4);
            ss += (double)x[j] * x[j];
        }
    }
    double inv = 1.0 / sqrt(ss); /* in double: a huge norm's inverse is subnormal in float */
    for (size_t j = 0; j < dim; j++) {
        float y = (float)(x[j] * inv);
        row[j] = fabsf(y) < FLT_MIN ? 0.0f : y;
    }
}
