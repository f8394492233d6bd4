/* Helpers shared by the kfdtrace test kernels.
 *
 * The kernels are compiled with -nogpulib (no ROCm device libraries), so the OpenCL work-item
 * functions (get_global_id, ...) and barrier() cannot be linked. These macros use the AMDGPU
 * builtins directly. They are macros, not functions, so that -O0 code does not grow one extra
 * call per helper: each -O0 kernel calls exactly one function (its __clang_ocl_kern_imp_ body).
 * With code object v5 the workgroup size is read from the hidden kernel arguments
 * (hidden_group_size_x/y/z), so the dispatcher must fill them (Kernel.pack_args(grid=, block=)).
 */
#ifndef KFDTRACE_KERNELS_COMMON_H
#define KFDTRACE_KERNELS_COMMON_H

#define GLOBAL_ID_X() (__builtin_amdgcn_workgroup_id_x() * __builtin_amdgcn_workgroup_size_x() \
                       + __builtin_amdgcn_workitem_id_x())
#define GLOBAL_ID_Y() (__builtin_amdgcn_workgroup_id_y() * __builtin_amdgcn_workgroup_size_y() \
                       + __builtin_amdgcn_workitem_id_y())

/* barrier(CLK_LOCAL_MEM_FENCE): release LDS writes, wait for the workgroup, acquire. */
#define WORKGROUP_BARRIER() do { \
        __builtin_amdgcn_fence(__ATOMIC_RELEASE, "workgroup"); \
        __builtin_amdgcn_s_barrier(); \
        __builtin_amdgcn_fence(__ATOMIC_ACQUIRE, "workgroup"); \
    } while (0)

#endif
