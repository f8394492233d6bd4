/* Naive row-major matrix product: c (m x n) = a (m x k) * b (k x n). 2D grid: x = column (< n),
 * y = row (< m). Each work-item accumulates its dot product left to right (p = 0 .. k-1); -O2
 * contracts each step into a fused multiply-add. */
#include "common.h"

kernel void matmul(global const float *a, global const float *b, global float *c,
                   uint m, uint n, uint k)
{
    uint col = GLOBAL_ID_X();
    uint row = GLOBAL_ID_Y();
    if (row < m && col < n) {
        float acc = 0.0f;
        for (uint p = 0; p < k; ++p)
            acc += a[row * k + p] * b[p * n + col];
        c[row * n + col] = acc;
    }
}
