// upfirdn2d: per channel, upsample by zero insertion, pad (negative: crop), correlate with the
// prepared filter, keep every down-th sample (StyleGAN2, Karras et al. 2020, appendix B).
//
// The kernels compute each output as a polyphase sum: only the input samples that land on filter
// taps are read, so the inserted zeros cost nothing. Along one axis, output o reads the
// upsampled-and-padded signal at u = o * down - pad0 + k for taps k = 0 .. fw-1; u hits input
// sample i when u = i * up, i.e. tap k = i * up - (o * down - pad0).
//
// The kernels correlate with the filter flipped (a true convolution) unless flip_filter, and scale
// by the gain; they read the filter in the accumulation type (float32, or float64 for float64).
#pragma once

#include <cstddef>

#include "common.h"

// Bounds checks of the CPU emulation (tests): compiled out of the CUDA build.
#ifdef STYLEGAN_OPS_BOUNDS_CHECK
#include <stdexcept>
#define SG_ASSERT(cond)                                                                  \
  do {                                                                                   \
    if (!(cond)) throw std::out_of_range("stylegan_ops emulation: " #cond " failed"); \
  } while (0)
#else
#define SG_ASSERT(cond) \
  do {                  \
  } while (0)
#endif

namespace stylegan_ops {

struct UpfirdnParams {
  int n = 0, c = 0, in_h = 0, in_w = 0, out_h = 0, out_w = 0;
  int upx = 1, upy = 1, downx = 1, downy = 1, padx0 = 0, pady0 = 0;
  int fw = 1, fh = 1;
  bool flip_filter = false;  // correlate with f as given (else with f flipped: a convolution)
  double gain = 1;
  int64_t sxn = 0, sxc = 0, sxh = 0, sxw = 0;  // input strides (elements)
  int64_t syn = 0, syc = 0, syh = 0, syw = 0;  // output strides (elements)
  bool channels_last = false;                  // memory order N, H, W, C (else N, C, H, W)
  int64_t out_numel = 0;
  int64_t x_span = 0, y_span = 0;              // elements addressable from x and y (bounds checks)
};

struct UpfirdnArgs {
  UpfirdnParams p;
  DType dtype = DType::Float32;
  int device = -1;
  const void* x = nullptr;
  const void* f = nullptr;  // [fh, fw], contiguous, in the accumulation type
  void* y = nullptr;
};

void upfirdn2d_cuda(const UpfirdnArgs& args);  // upfirdn2d.cu
void upfirdn2d_cpu(const UpfirdnArgs& args);   // cpu_emulation.cpp (tests only)

// Which kernel runs. The tiled kernels are the shapes StyleGAN2 uses (a 4x4 filter with up=2,
// down=2 or neither; backward of up=2 is down=2 and vice versa, so they cover every derivative);
// one tap is a pure pad/crop/resample; everything else takes the general kernel.
enum class UpfirdnKernel : int { General = 0, OneTap, TiledUp1Down1F4, TiledUp2Down1F4, TiledUp1Down2F4 };

inline UpfirdnKernel choose_kernel(const UpfirdnParams& p) {
  if (p.fw == 1 && p.fh == 1) return UpfirdnKernel::OneTap;
  if (p.fw == 4 && p.fh == 4 && p.upx == p.upy && p.downx == p.downy) {
    if (p.upx == 1 && p.downx == 1) return UpfirdnKernel::TiledUp1Down1F4;
    if (p.upx == 2 && p.downx == 1) return UpfirdnKernel::TiledUp2Down1F4;
    if (p.upx == 1 && p.downx == 2) return UpfirdnKernel::TiledUp1Down2F4;
  }
  return UpfirdnKernel::General;
}

// Tap (ky, kx) of the correlation: f itself when flip_filter, else f flipped along both axes.
template <typename A>
SG_HD A filter_tap(const UpfirdnParams& p, const A* f, int ky, int kx) {
  return p.flip_filter ? f[ky * p.fw + kx] : f[(p.fh - 1 - ky) * p.fw + (p.fw - 1 - kx)];
}

// ---------------------------------------------------------------------------------------------
// General kernel: one thread per output element, reading the input through the cache.

// Output coordinates of the flat index i in the output's memory order.
template <typename I>
SG_HD void output_coords(const UpfirdnParams& p, I i, int& nn, int& ch, int& oy, int& ox) {
  if (p.channels_last) {
    ch = int(i % I(p.c));
    i /= I(p.c);
    ox = int(i % I(p.out_w));
    i /= I(p.out_w);
    oy = int(i % I(p.out_h));
    nn = int(i / I(p.out_h));
  } else {
    ox = int(i % I(p.out_w));
    i /= I(p.out_w);
    oy = int(i % I(p.out_h));
    i /= I(p.out_h);
    ch = int(i % I(p.c));
    nn = int(i / I(p.c));
  }
}

template <typename T, typename A, bool ONE_TAP>
SG_HD void general_element(const UpfirdnParams& p, const T* x, const A* f, T* y, int64_t i) {
  int nn, ch, oy, ox;
  if (p.out_numel <= 0x7fffffff) {
    output_coords<uint32_t>(p, uint32_t(i), nn, ch, oy, ox);
  } else {
    output_coords<int64_t>(p, i, nn, ch, oy, ox);
  }
  const int u0 = ox * p.downx - p.padx0;  // upsampled-padded position of tap 0
  const int v0 = oy * p.downy - p.pady0;
  const T* xc = x + nn * p.sxn + ch * p.sxc;
  A acc = A(0);
  if (ONE_TAP) {
    const int ix = floor_div(u0, p.upx), iy = floor_div(v0, p.upy);
    if (ix * p.upx == u0 && iy * p.upy == v0 && ix >= 0 && ix < p.in_w && iy >= 0 && iy < p.in_h) {
      SG_ASSERT(nn * p.sxn + ch * p.sxc + iy * p.sxh + ix * p.sxw < p.x_span);
      acc = static_cast<A>(xc[iy * p.sxh + ix * p.sxw]) * f[0];  // one tap: nothing to flip
    }
  } else {
    const int ix_lo = imax(ceil_div(u0, p.upx), 0);
    const int ix_hi = imin(floor_div(u0 + p.fw - 1, p.upx), p.in_w - 1);
    const int iy_lo = imax(ceil_div(v0, p.upy), 0);
    const int iy_hi = imin(floor_div(v0 + p.fh - 1, p.upy), p.in_h - 1);
    for (int iy = iy_lo; iy <= iy_hi; ++iy) {
      const int ky = iy * p.upy - v0;
      const T* xrow = xc + iy * p.sxh;
      for (int ix = ix_lo; ix <= ix_hi; ++ix) {
        SG_ASSERT(ky >= 0 && ky < p.fh && ix * p.upx - u0 >= 0 && ix * p.upx - u0 < p.fw);
        SG_ASSERT(nn * p.sxn + ch * p.sxc + iy * p.sxh + ix * p.sxw < p.x_span);
        acc += static_cast<A>(xrow[ix * p.sxw]) * filter_tap(p, f, ky, ix * p.upx - u0);
      }
    }
  }
  acc *= A(p.gain);
  const int64_t out = nn * p.syn + ch * p.syc + oy * p.syh + ox * p.syw;
  SG_ASSERT(out >= 0 && out < p.y_span);
  y[out] = static_cast<T>(acc);
}

// ---------------------------------------------------------------------------------------------
// Tiled kernels: a block reads the input pixels of an output tile (tile_w x tile_h pixels of cb
// channels) into shared memory once, then every thread computes outputs from there.

struct TilePlan {
  int tile_w = 1, tile_h = 1, cb = 1;  // outputs per block
  int in_tile_w = 1, in_tile_h = 1;    // input pixels per block and channel
  int tiles_x = 1, tiles_y = 1, cblocks = 1;
  int64_t grid_x = 1;                  // spatial tiles
  int64_t rows = 1;                    // n * cblocks: (sample, channel block) pairs
  int grid_y = 1;                      // blocks along rows; each loops over rows with stride grid_y
  int64_t smem_elems = 0;              // shared memory, in accumulation-type elements
};

constexpr int64_t kMaxSharedBytes = 48 * 1024;  // the default per-block limit on every GPU

inline int pow2_ceil(int v, int cap) {
  int r = 1;
  while (r < v && r < cap) r <<= 1;
  return r;
}

inline int pow2_floor(int v) {
  int r = 1;
  while (r * 2 <= v) r <<= 1;
  return r;
}

inline int isqrt(int v) {
  int r = 0;
  while ((r + 1) * (r + 1) <= v) ++r;
  return r;
}

// Tile sizes: about 1024 outputs per block for NCHW (rows up to 64 wide: coalesced reads), 2048
// for channels_last (32 channels of near-square tiles: each pixel is a 32-channel run in memory),
// shrunk until shared memory fits.
inline TilePlan plan_tiles(const UpfirdnParams& p, int up, int down, int fs, int acc_bytes) {
  TilePlan t;
  if (p.channels_last) {
    t.cb = imin(p.c, 32);
    const int budget = imax(2048 / t.cb, 1);
    t.tile_w = pow2_ceil(p.out_w, pow2_floor(imax(isqrt(budget), 1)));
    t.tile_h = pow2_ceil(p.out_h, pow2_floor(imax(budget / t.tile_w, 1)));
  } else {
    t.tile_w = pow2_ceil(p.out_w, 64);
    t.tile_h = pow2_ceil(p.out_h, pow2_floor(imax(1024 / t.tile_w, 1)));
    t.cb = imax(imin(1024 / (t.tile_w * t.tile_h), p.c), 1);
  }
  for (;;) {
    t.in_tile_w = ceil_div((t.tile_w - 1) * down + fs, up);
    t.in_tile_h = ceil_div((t.tile_h - 1) * down + fs, up);
    t.smem_elems = int64_t(fs) * fs + int64_t(t.cb) * t.in_tile_h * t.in_tile_w;
    if (t.smem_elems * acc_bytes <= kMaxSharedBytes) break;
    if (t.cb > 1) {
      t.cb = (t.cb + 1) / 2;
    } else if (t.tile_h > 1) {
      t.tile_h /= 2;
    } else if (t.tile_w > 1) {
      t.tile_w /= 2;
    } else {
      break;  // unreachable for the 4x4 filters the tiled kernels take (32 elements)
    }
  }
  t.tiles_x = ceil_div(p.out_w, t.tile_w);
  t.tiles_y = ceil_div(p.out_h, t.tile_h);
  t.cblocks = ceil_div(p.c, t.cb);
  t.grid_x = int64_t(t.tiles_x) * t.tiles_y;
  t.rows = int64_t(p.n) * t.cblocks;
  t.grid_y = int(t.rows < kMaxGridY ? t.rows : kMaxGridY);
  return t;
}

// Where a block's tile lies: sample, first channel, first output pixel, first input pixel.
struct TileOrigin {
  int nn, c0, ox0, oy0, ix0, iy0;
};

SG_HD TileOrigin tile_origin(const UpfirdnParams& p, const TilePlan& t, int64_t bx, int64_t row,
                             int up, int down) {
  TileOrigin o;
  o.nn = int(row / t.cblocks);
  o.c0 = int(row % t.cblocks) * t.cb;
  o.ox0 = int(bx % t.tiles_x) * t.tile_w;
  o.oy0 = int(bx / t.tiles_x) * t.tile_h;
  o.ix0 = ceil_div(o.ox0 * down - p.padx0, up);  // first input column any output of the tile reads
  o.iy0 = ceil_div(o.oy0 * down - p.pady0, up);
  return o;
}

// Shared-memory position of an input pixel: channel-fastest for channels_last, so that
// consecutive threads touch consecutive banks in both layouts.
SG_HD int tile_index(const UpfirdnParams& p, const TilePlan& t, int cc, int ty, int tx) {
  return p.channels_last ? (ty * t.in_tile_w + tx) * t.cb + cc : (cc * t.in_tile_h + ty) * t.in_tile_w + tx;
}

// Phase 1 (all threads of a block, then a barrier): the filter (in correlation order, times the
// gain) and the input tile into shared memory, zeros outside the image. Consecutive threads read
// consecutive addresses in either layout.
template <typename T, typename A>
SG_HD void tile_load(const UpfirdnParams& p, const TilePlan& t, const T* x, const A* f, int fs,
                     const TileOrigin& o, int tid, int nthreads, A* sf, A* stile) {
  for (int i = tid; i < fs * fs; i += nthreads) sf[i] = filter_tap(p, f, i / fs, i % fs) * A(p.gain);
  const int count = t.cb * t.in_tile_h * t.in_tile_w;
  for (int i = tid; i < count; i += nthreads) {
    int cc, ty, tx;
    if (p.channels_last) {
      cc = i % t.cb;
      tx = (i / t.cb) % t.in_tile_w;
      ty = i / (t.cb * t.in_tile_w);
    } else {
      tx = i % t.in_tile_w;
      ty = (i / t.in_tile_w) % t.in_tile_h;
      cc = i / (t.in_tile_w * t.in_tile_h);
    }
    const int ix = o.ix0 + tx, iy = o.iy0 + ty, ch = o.c0 + cc;
    A v = A(0);
    if (ix >= 0 && ix < p.in_w && iy >= 0 && iy < p.in_h && ch < p.c) {
      const int64_t off = o.nn * p.sxn + ch * p.sxc + iy * p.sxh + ix * p.sxw;
      SG_ASSERT(off >= 0 && off < p.x_span);
      v = static_cast<A>(x[off]);
    }
    const int s = tile_index(p, t, cc, ty, tx);
    SG_ASSERT(s >= 0 && int64_t(s) + int64_t(fs) * fs < t.smem_elems);
    stile[s] = v;
  }
}

// Phase 2: each thread computes outputs of the tile from shared memory. FS % UP == 0, so every
// output reads exactly FS / UP taps per axis, starting at phase k0 = i0 * UP - u0 in [0, UP).
template <typename T, typename A, int UP, int DOWN, int FS>
SG_HD void tile_compute(const UpfirdnParams& p, const TilePlan& t, T* y, const TileOrigin& o,
                        int tid, int nthreads, const A* sf, const A* stile) {
  static_assert(FS % UP == 0, "the tiled kernels need a filter size divisible by the up factor");
  constexpr int NT = FS / UP;
  const int count = t.cb * t.tile_h * t.tile_w;
  for (int i = tid; i < count; i += nthreads) {
    int cc, oty, otx;
    if (p.channels_last) {
      cc = i % t.cb;
      otx = (i / t.cb) % t.tile_w;
      oty = i / (t.cb * t.tile_w);
    } else {
      otx = i % t.tile_w;
      oty = (i / t.tile_w) % t.tile_h;
      cc = i / (t.tile_w * t.tile_h);
    }
    const int ox = o.ox0 + otx, oy = o.oy0 + oty, ch = o.c0 + cc;
    if (ox >= p.out_w || oy >= p.out_h || ch >= p.c) continue;
    const int u0 = ox * DOWN - p.padx0, v0 = oy * DOWN - p.pady0;
    const int ixf = ceil_div(u0, UP), iyf = ceil_div(v0, UP);
    const int kx0 = ixf * UP - u0, ky0 = iyf * UP - v0;
    const int tx0 = ixf - o.ix0, ty0 = iyf - o.iy0;
    SG_ASSERT(tx0 >= 0 && tx0 + NT <= t.in_tile_w && ty0 >= 0 && ty0 + NT <= t.in_tile_h);
    A acc = A(0);
#pragma unroll
    for (int a = 0; a < NT; ++a) {
#pragma unroll
      for (int b = 0; b < NT; ++b) {
        acc += stile[tile_index(p, t, cc, ty0 + a, tx0 + b)] * sf[(ky0 + a * UP) * FS + kx0 + b * UP];
      }
    }
    const int64_t out = o.nn * p.syn + ch * p.syc + oy * p.syh + ox * p.syw;
    SG_ASSERT(out >= 0 && out < p.y_span);
    y[out] = static_cast<T>(acc);
  }
}

}  // namespace stylegan_ops
