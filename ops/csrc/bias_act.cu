// bias_act CUDA kernels: one element-wise kernel per mode (forward, gradient, second-order
// term), memory-bound, several elements per thread for memory-level parallelism. The math is in
// bias_act.h, shared with the CPU emulation the tests run.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "bias_act.h"
#include "dtype_dispatch.h"

namespace stylegan_ops {
namespace {

constexpr int kUnroll = 4;

template <int MODE, typename T>
__global__ void __launch_bounds__(kThreads)
    bias_act_kernel(BiasActParams p, const T* x, const T* b, const T* y, const T* dy, const T* ggx, T* out) {
  const int64_t per_block = int64_t(blockDim.x) * kUnroll;
  for (int64_t base = int64_t(blockIdx.x) * per_block; base < p.numel; base += int64_t(gridDim.x) * per_block) {
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) {
      const int64_t i = base + threadIdx.x + int64_t(k) * blockDim.x;  // coalesced across the warp
      if (i < p.numel) out[i] = bias_act_element<MODE, T, AccT<T>>(p, x, b, y, dy, ggx, i);
    }
  }
}

template <int MODE, typename T>
void launch(const BiasActArgs& a, cudaStream_t stream) {
  const int64_t per_block = int64_t(kThreads) * kUnroll;
  const int64_t blocks = (a.p.numel + per_block - 1) / per_block;
  const unsigned grid = unsigned(blocks < kMaxGridX ? blocks : kMaxGridX);
  bias_act_kernel<MODE, T><<<grid, kThreads, 0, stream>>>(
      a.p, static_cast<const T*>(a.x), static_cast<const T*>(a.b), static_cast<const T*>(a.y),
      static_cast<const T*>(a.dy), static_cast<const T*>(a.ggx), static_cast<T*>(a.out));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

void bias_act_cuda(const BiasActArgs& a) {
  const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(a.device));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(a.device));
  dispatch_dtype(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    switch (a.mode) {
      case BiasActMode::Forward: launch<int(BiasActMode::Forward), T>(a, stream); break;
      case BiasActMode::Grad: launch<int(BiasActMode::Grad), T>(a, stream); break;
      case BiasActMode::Grad2: launch<int(BiasActMode::Grad2), T>(a, stream); break;
    }
  });
}

}  // namespace stylegan_ops
