// filtered_lrelu CUDA kernel: one block per output tile of one (sample, channel) plane, five
// phases through shared memory (load, stage 1 along x, stage 1 along y + activation + mask,
// stage 2 along x, stage 2 along y + store). The per-thread code is in filtered_lrelu.h, shared
// with the CPU emulation the tests run; the design is described there.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "dtype_dispatch.h"
#include "filtered_lrelu.h"

namespace stylegan_ops {
namespace {

template <typename T, typename A>
__global__ void __launch_bounds__(kThreads)
    filtered_lrelu_kernel(FilteredLreluParams p, FlPlan t, const T* x, const T* b, const A* f1, const A* f2,
                          uint8_t* mask_out, const uint8_t* mask_in, T* y) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* smem = reinterpret_cast<A*>(smem_raw);
  // Every thread of the block runs the same iterations and phases (the branches below depend on
  // the parameters only), so the barriers are uniform.
  for (int64_t row = blockIdx.y; row < t.rows; row += gridDim.y) {
    const FlTile o = fl_tile(p, t, blockIdx.x, row);
    fl_load<T, A>(p, t, o, x, b, f1, f2, threadIdx.x, blockDim.x, smem);
    __syncthreads();
    if (p.f1_sep) {
      fl_up_x<A>(p, t, o, threadIdx.x, blockDim.x, smem);
      __syncthreads();
    }
    fl_up_y_act<A>(p, t, o, mask_out, mask_in, threadIdx.x, blockDim.x, smem);
    __syncthreads();
    if (p.f2_sep) {
      fl_down_x<A>(p, t, threadIdx.x, blockDim.x, smem);
      __syncthreads();
    }
    fl_down_y_store<T, A>(p, t, o, y, threadIdx.x, blockDim.x, smem);
    __syncthreads();  // before the next plane overwrites the buffers
  }
}

template <typename T>
void launch(const FilteredLreluArgs& a, cudaStream_t stream) {
  using A = AccT<T>;
  const FlPlan t = fl_plan(a.p, int(sizeof(A)));
  TORCH_CHECK(t.ok, "filtered_lrelu: the filters are too large for the fused kernel's shared memory");
  TORCH_CHECK(t.grid_x <= kMaxGridX, "filtered_lrelu: too many tiles (", t.grid_x, ")");
  const dim3 grid(unsigned(t.grid_x), unsigned(t.grid_y));
  const size_t smem = size_t(t.smem_elems) * sizeof(A);
  filtered_lrelu_kernel<T, A><<<grid, kThreads, smem, stream>>>(
      a.p, t, static_cast<const T*>(a.x), static_cast<const T*>(a.b), static_cast<const A*>(a.f1),
      static_cast<const A*>(a.f2), a.mask_out, a.mask_in, static_cast<T*>(a.y));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

void filtered_lrelu_cuda(const FilteredLreluArgs& a) {
  const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(a.device));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(a.device));
  dispatch_dtype(a.dtype, [&](auto tag) { launch<decltype(tag)>(a, stream); });
}

}  // namespace stylegan_ops
