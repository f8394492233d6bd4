/* bins[data[i] % nbins] += 1 for i < n (nothing when nbins == 0). 1D grid.
 *
 * The increment is a device-scope relaxed atomic add on global memory (global_atomic_add_u32);
 * the OpenCL atomic_add()/atomic_inc() builtins are library functions that do not link without
 * the device libraries, so the clang scoped-atomic builtin is used instead. */
#include "common.h"

kernel void histogram(global const uint *data, global uint *bins, uint n, uint nbins)
{
    uint i = GLOBAL_ID_X();
    if (i < n && nbins != 0)
        __scoped_atomic_fetch_add(&bins[data[i] % nbins], 1u, __ATOMIC_RELAXED,
                                  __MEMORY_SCOPE_DEVICE);
}
