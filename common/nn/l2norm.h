/* Row-wise L2 normalisation f = u / ||u|| for (B, d) batch-major features. */
#ifndef NPID_NN_L2NORM_H
#define NPID_NN_L2NORM_H

/* f (B, d), norms (B) receives ||u_i|| (clamped below at 1e-12). f may alias u. */
void l2norm_forward(const float *u, int B, int d, float *f, float *norms);
/* du = (df - f (f . df)) / ||u||; du may alias df. */
void l2norm_backward(const float *f, const float *norms, const float *df, int B, int d,
                     float *du);

#endif
