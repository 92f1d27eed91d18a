// upfirdn2d CUDA kernels: the general kernel (any factors, padding and filter), the one-tap
// kernel (pure pad/crop/resample) and the tiled shared-memory kernels for the 4x4-filter shapes
// StyleGAN2 uses. The per-thread code is in upfirdn2d.h, shared with the CPU emulation.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "dtype_dispatch.h"
#include "upfirdn2d.h"

namespace stylegan_ops {
namespace {

template <typename T, typename A, bool ONE_TAP>
__global__ void __launch_bounds__(kThreads) general_kernel(UpfirdnParams p, const T* x, const A* f, T* y) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < p.out_numel;
       i += int64_t(gridDim.x) * blockDim.x) {
    general_element<T, A, ONE_TAP>(p, x, f, y, i);
  }
}

template <typename T, typename A, int UP, int DOWN, int FS>
__global__ void __launch_bounds__(kThreads) tiled_kernel(UpfirdnParams p, TilePlan t, const T* x, const A* f, T* y) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* sf = reinterpret_cast<A*>(smem_raw);
  A* stile = sf + FS * FS;
  // Every thread of the block runs the same number of iterations, so the barriers are uniform.
  for (int64_t row = blockIdx.y; row < t.rows; row += gridDim.y) {
    const TileOrigin o = tile_origin(p, t, blockIdx.x, row, UP, DOWN);
    tile_load<T, A>(p, t, x, f, FS, o, threadIdx.x, blockDim.x, sf, stile);
    __syncthreads();
    tile_compute<T, A, UP, DOWN, FS>(p, t, y, o, threadIdx.x, blockDim.x, sf, stile);
    __syncthreads();  // before the next row overwrites the tile
  }
}

template <typename T, bool ONE_TAP>
void launch_general(const UpfirdnArgs& a, cudaStream_t stream) {
  using A = AccT<T>;
  const int64_t blocks = (a.p.out_numel + kThreads - 1) / kThreads;
  const unsigned grid = unsigned(blocks < kMaxGridX ? blocks : kMaxGridX);
  general_kernel<T, A, ONE_TAP><<<grid, kThreads, 0, stream>>>(
      a.p, static_cast<const T*>(a.x), static_cast<const A*>(a.f), static_cast<T*>(a.y));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T, int UP, int DOWN, int FS>
void launch_tiled(const UpfirdnArgs& a, cudaStream_t stream) {
  using A = AccT<T>;
  const TilePlan t = plan_tiles(a.p, UP, DOWN, FS, int(sizeof(A)));
  TORCH_CHECK(t.grid_x <= kMaxGridX, "upfirdn2d: too many tiles (", t.grid_x, ")");
  const dim3 grid(unsigned(t.grid_x), unsigned(t.grid_y));
  const size_t smem = size_t(t.smem_elems) * sizeof(A);
  tiled_kernel<T, A, UP, DOWN, FS><<<grid, kThreads, smem, stream>>>(
      a.p, t, static_cast<const T*>(a.x), static_cast<const A*>(a.f), static_cast<T*>(a.y));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

void upfirdn2d_cuda(const UpfirdnArgs& a) {
  const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(a.device));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(a.device));
  dispatch_dtype(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    switch (choose_kernel(a.p)) {
      case UpfirdnKernel::OneTap: launch_general<T, true>(a, stream); break;
      case UpfirdnKernel::TiledUp1Down1F4: launch_tiled<T, 1, 1, 4>(a, stream); break;
      case UpfirdnKernel::TiledUp2Down1F4: launch_tiled<T, 2, 1, 4>(a, stream); break;
      case UpfirdnKernel::TiledUp1Down2F4: launch_tiled<T, 1, 2, 4>(a, stream); break;
      default: launch_general<T, false>(a, stream); break;
    }
  });
}

}  // namespace stylegan_ops
