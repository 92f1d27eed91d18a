// CPU emulation of the CUDA kernels, for the tests only (never part of the production build).
//
// It runs the kernels' own per-element and per-thread code (bias_act.h, upfirdn2d.h,
// filtered_lrelu.h) with the same launch geometry, block by block and thread by thread, phase by
// phase where a kernel has a barrier. Together with the host code (bias_act.cpp, upfirdn2d.cpp,
// filtered_lrelu.cpp, compiled with STYLEGAN_OPS_CPU_EMULATION) this gives CPU-registered operators that exercise the checks, the
// layouts, the index arithmetic, the tile planning and the shared-memory bounds (checked here)
// of the real kernels on machines without a GPU. What it cannot show: races, barriers, warp
// behaviour, launch limits, the device compiler's code.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "bias_act.h"
#include "dtype_dispatch.h"
#include "filtered_lrelu.h"
#include "upfirdn2d.h"

namespace stylegan_ops {
namespace {

template <int MODE, typename T>
void run_bias_act(const BiasActArgs& a) {
  const T* x = static_cast<const T*>(a.x);
  const T* b = static_cast<const T*>(a.b);
  const T* y = static_cast<const T*>(a.y);
  const T* dy = static_cast<const T*>(a.dy);
  const T* ggx = static_cast<const T*>(a.ggx);
  T* out = static_cast<T*>(a.out);
  for (int64_t i = 0; i < a.p.numel; ++i) out[i] = bias_act_element<MODE, T, AccT<T>>(a.p, x, b, y, dy, ggx, i);
}

template <typename T, bool ONE_TAP>
void run_general(const UpfirdnArgs& a) {
  for (int64_t i = 0; i < a.p.out_numel; ++i) {
    general_element<T, AccT<T>, ONE_TAP>(a.p, static_cast<const T*>(a.x), static_cast<const AccT<T>*>(a.f),
                                         static_cast<T*>(a.y), i);
  }
}

// tiled_kernel in upfirdn2d.cu, with the grid, the threads and the barrier made explicit.
template <typename T, int UP, int DOWN, int FS>
void run_tiled(const UpfirdnArgs& a) {
  using A = AccT<T>;
  const TilePlan t = plan_tiles(a.p, UP, DOWN, FS, int(sizeof(A)));
  SG_ASSERT(t.smem_elems * int64_t(sizeof(A)) <= kMaxSharedBytes);
  // Poisoned before each tile: a read of an element no thread wrote shows up as NaN in the output.
  std::vector<A> smem(size_t(t.smem_elems));
  A* sf = smem.data();
  A* stile = sf + FS * FS;
  const T* x = static_cast<const T*>(a.x);
  const A* f = static_cast<const A*>(a.f);
  T* y = static_cast<T*>(a.y);
  for (int64_t bx = 0; bx < t.grid_x; ++bx) {
    for (int by = 0; by < t.grid_y; ++by) {
      for (int64_t row = by; row < t.rows; row += t.grid_y) {
        const TileOrigin o = tile_origin(a.p, t, bx, row, UP, DOWN);
        std::fill(smem.begin(), smem.end(), A(NAN));
        for (int tid = 0; tid < kThreads; ++tid) tile_load<T, A>(a.p, t, x, f, FS, o, tid, kThreads, sf, stile);
        for (int tid = 0; tid < kThreads; ++tid) {
          tile_compute<T, A, UP, DOWN, FS>(a.p, t, y, o, tid, kThreads, sf, stile);
        }
      }
    }
  }
}

// filtered_lrelu_kernel in filtered_lrelu.cu, with the grid, the threads and the barriers made
// explicit: each phase runs for every thread before the next one starts.
template <typename T>
void run_filtered_lrelu(const FilteredLreluArgs& a) {
  using A = AccT<T>;
  const FilteredLreluParams& p = a.p;
  const FlPlan t = fl_plan(p, int(sizeof(A)));
  SG_ASSERT(t.ok && t.smem_elems * int64_t(sizeof(A)) <= kFlMaxSharedBytes);
  // Poisoned before each tile: a read of an element no thread wrote shows up as NaN in the output.
  std::vector<A> smem(size_t(t.smem_elems));
  const T* x = static_cast<const T*>(a.x);
  const T* b = static_cast<const T*>(a.b);
  const A* f1 = static_cast<const A*>(a.f1);
  const A* f2 = static_cast<const A*>(a.f2);
  T* y = static_cast<T*>(a.y);
  for (int64_t bx = 0; bx < t.grid_x; ++bx) {
    for (int by = 0; by < t.grid_y; ++by) {
      for (int64_t row = by; row < t.rows; row += t.grid_y) {
        const FlTile o = fl_tile(p, t, bx, row);
        std::fill(smem.begin(), smem.end(), A(NAN));
        for (int tid = 0; tid < kThreads; ++tid) fl_load<T, A>(p, t, o, x, b, f1, f2, tid, kThreads, smem.data());
        if (p.f1_sep) {
          for (int tid = 0; tid < kThreads; ++tid) fl_up_x<A>(p, t, o, tid, kThreads, smem.data());
        }
        for (int tid = 0; tid < kThreads; ++tid) {
          fl_up_y_act<A>(p, t, o, a.mask_out, a.mask_in, tid, kThreads, smem.data());
        }
        if (p.f2_sep) {
          for (int tid = 0; tid < kThreads; ++tid) fl_down_x<A>(p, t, tid, kThreads, smem.data());
        }
        for (int tid = 0; tid < kThreads; ++tid) fl_down_y_store<T, A>(p, t, o, y, tid, kThreads, smem.data());
      }
    }
  }
}

}  // namespace

void filtered_lrelu_cpu(const FilteredLreluArgs& a) {
  dispatch_dtype(a.dtype, [&](auto tag) { run_filtered_lrelu<decltype(tag)>(a); });
}

void bias_act_cpu(const BiasActArgs& a) {
  dispatch_dtype(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    switch (a.mode) {
      case BiasActMode::Forward: run_bias_act<int(BiasActMode::Forward), T>(a); break;
      case BiasActMode::Grad: run_bias_act<int(BiasActMode::Grad), T>(a); break;
      case BiasActMode::Grad2: run_bias_act<int(BiasActMode::Grad2), T>(a); break;
    }
  });
}

void upfirdn2d_cpu(const UpfirdnArgs& a) {
  dispatch_dtype(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    switch (choose_kernel(a.p)) {
      case UpfirdnKernel::OneTap: run_general<T, true>(a); break;
      case UpfirdnKernel::TiledUp1Down1F4: run_tiled<T, 1, 1, 4>(a); break;
      case UpfirdnKernel::TiledUp2Down1F4: run_tiled<T, 2, 1, 4>(a); break;
      case UpfirdnKernel::TiledUp1Down2F4: run_tiled<T, 1, 2, 4>(a); break;
      default: run_general<T, false>(a); break;
    }
  });
}

}  // namespace stylegan_ops
