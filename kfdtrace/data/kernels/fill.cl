/* dst[i] = value for i < n. 1D grid. */
#include "common.h"

kernel void fill(global uint *dst, uint value, uint n)
{
    uint i = GLOBAL_ID_X();
    if (i < n)
        dst[i] = value;
}
