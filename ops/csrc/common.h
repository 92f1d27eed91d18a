// Shared by the CUDA kernels (.cu, compiled by nvcc) and the host code and CPU emulation (.cpp,
// compiled by the host compiler): the per-element and per-thread code of every kernel lives in
// headers as SG_HD functions, so the CPU emulation runs exactly the code the GPU runs.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define SG_HD __host__ __device__ __forceinline__
#else
#define SG_HD inline
#endif

// The namespace the ops are registered in. The CPU-emulation build of the tests uses another one,
// so that it can be loaded next to the real extension.
#ifndef STYLEGAN_OPS_NS
#define STYLEGAN_OPS_NS stylegan_ops
#endif

namespace stylegan_ops {

// The element types the kernels are instantiated for. Arithmetic runs in AccT<T>: float for
// float32/float16/bfloat16, double for float64.
enum class DType : int { Float32 = 0, Float64 = 1, Float16 = 2, BFloat16 = 3 };

// floor(a / b) and ceil(a / b) for b > 0 and any sign of a (C++ division truncates toward zero).
SG_HD int floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
SG_HD int ceil_div(int a, int b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }
SG_HD int imin(int a, int b) { return a < b ? a : b; }
SG_HD int imax(int a, int b) { return a > b ? a : b; }

// Launch geometry shared by the CUDA launchers and the CPU emulation, so the emulation covers the
// same thread/block decomposition. The emulation build lowers kMaxGridY to exercise the loop over
// grid rows that very large batches need on a GPU.
#ifndef STYLEGAN_OPS_MAX_GRID_Y
#define STYLEGAN_OPS_MAX_GRID_Y 65535
#endif
constexpr int kMaxGridY = STYLEGAN_OPS_MAX_GRID_Y;
constexpr int64_t kMaxGridX = 2147483647;
constexpr int kThreads = 256;

}  // namespace stylegan_ops
