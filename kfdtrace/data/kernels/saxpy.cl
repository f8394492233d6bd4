/* y[i] = alpha * x[i] + y[i] for i < n. 1D grid. OpenCL contracts this to one fused multiply-add
 * (v_fma/v_fmac) at -O2, so reference results must be computed with a single rounding. */
#include "common.h"

kernel void saxpy(float alpha, global const float *x, global float *y, uint n)
{
    uint i = GLOBAL_ID_X();
    if (i < n)
        y[i] = alpha * x[i] + y[i];
}
