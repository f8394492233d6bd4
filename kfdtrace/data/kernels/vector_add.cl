/* c[i] = a[i] + b[i] for i < n. 1D grid. */
#include "common.h"

kernel void vector_add(global const float *a, global const float *b, global float *c, uint n)
{
    uint i = GLOBAL_ID_X();
    if (i < n)
        c[i] = a[i] + b[i];
}
