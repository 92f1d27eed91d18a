// filtered_lrelu: StyleGAN3's alias-free leaky ReLU (Karras et al. 2021, sec. 3.2) in one pass:
// upsample with fu, bias + leaky ReLU * gain (clamped), low-pass with fd and downsample, without
// writing the upsampled signal to memory.
//
// One kernel computes a general two-stage chain per (sample, channel) plane:
//
//   stage 1   T[t] = g1 * sum_k U[t - pad0 + k] * f1c[k]     U: x zero-inserted by `up`
//                                                            (U[i * up] = x[i], else 0)
//   act       M[t] = act(T[t])  for t in [0, T), 0 outside
//   stage 2   y[o] = g2 * sum_k M[o * down - q0 + k] * f2c[k]
//
// (per axis; f1c/f2c are the filters in correlation order: as given when flip, else reversed; a
// 1-D filter is separable, a 2-D one is applied as such). The forward is this chain with f1 = fu
// (gain up^2, padding pad0 = the op's padding), act = bias-added leaky ReLU * gain clamped, f2 =
// fd and q0 = 0. The activation's derivative is piecewise constant, so the forward records, per
// sample t of the temporary grid, which piece it was on in a 2-bit code (kMaskPos: gain, kMaskNeg:
// gain * slope, 0: clamped), four samples per byte along x. The backward is the transposed chain
// (f1 = fd, f2 = fu, up and down swapped, paddings mirrored, filters flipped) with act = "multiply
// by the code's factor": the same kernel in Masked mode. That chain is linear in its input, and
// its transpose is again a Masked chain, so derivatives of every order run on this kernel.
//
// Tiling: a block computes an output tile of tile_w x tile_h samples of one plane. It reads the
// input pixels the tile depends on (plus bias, zeros outside the image) into shared memory,
// computes the temporary samples the tile's outputs read (the stage-1 sums, separable as an x pass
// into a buffer then a y pass, or direct 2-D; then the activation), then the outputs (stage 2, the
// same way). Every phase is a loop over the block's threads, with a barrier between phases.
// Neighbouring tiles recompute the temporary samples their filters share (the halo).
//
// Mask ownership: tiles overlap on the temporary grid, so each byte of the mask is written by
// exactly one block: the tile whose range [t0, t0 + tile_w * down) along x holds it (the last tile
// along an axis also owns everything after), which needs t0 and tile_w * down to be multiples of
// 4 (tile_w is a multiple of 4; the forward has q0 = 0). Bytes no tile owns lie where no output
// reads, where the gradient is zero; the mask starts zeroed.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common.h"

// Bounds checks of the CPU emulation (tests): compiled out of the CUDA build.
#ifdef STYLEGAN_OPS_BOUNDS_CHECK
#include <stdexcept>
#define FL_ASSERT(cond)                                                                  \
  do {                                                                                   \
    if (!(cond)) throw std::out_of_range("stylegan_ops emulation: " #cond " failed"); \
  } while (0)
#else
#define FL_ASSERT(cond) \
  do {                  \
  } while (0)
#endif

namespace stylegan_ops {

enum class FlMode : int { Forward = 0, Masked = 1 };

// The 2-bit codes of the mask. 0 doubles as "clamped" and "never written" (factor 0).
constexpr int kMaskZero = 0, kMaskPos = 1, kMaskNeg = 2;

struct FilteredLreluParams {
  int n = 0, c = 0, in_h = 0, in_w = 0;  // input planes
  int t_h = 0, t_w = 0;                  // the temporary grid
  int out_h = 0, out_w = 0;
  int up = 1, down = 1;                  // stage-1 up factor, stage-2 down factor
  int pad_x0 = 0, pad_y0 = 0;            // stage-1 padding (before f1; negative crops)
  int q_x0 = 0, q_y0 = 0;                // stage-2 padding (before f2)
  int f1w = 1, f1h = 1, f2w = 1, f2h = 1;
  bool f1_sep = true, f2_sep = true;     // 1-D (the same taps along x and y) or 2-D
  bool flip1 = false, flip2 = false;
  double gain1 = 1, gain2 = 1;           // filter gains
  int mode = 0;                          // FlMode
  double act_gain = 1, slope = 0.2;
  double clamp = -1;                     // < 0: no clamping
  bool has_bias = false;
  bool write_mask = false;               // Forward: record the codes
  int64_t sxn = 0, sxc = 0, sxh = 0, sxw = 0;  // input strides (elements)
  int64_t syn = 0, syc = 0, syh = 0, syw = 0;  // output strides (elements)
  int64_t mask_row = 0;                  // bytes per row of the mask: ceil(t_w / 4)
  int64_t x_span = 0, y_span = 0, mask_span = 0;  // addressable elements (bounds checks)
};

struct FilteredLreluArgs {
  FilteredLreluParams p;
  DType dtype = DType::Float32;
  int device = -1;
  const void* x = nullptr;
  const void* b = nullptr;      // [C] in x's dtype, or nullptr
  const void* f1 = nullptr;     // contiguous, in the accumulation type
  const void* f2 = nullptr;
  uint8_t* mask_out = nullptr;  // Forward with write_mask: [N, C, t_h, mask_row], zeroed
  const uint8_t* mask_in = nullptr;  // Masked
  void* y = nullptr;
};

void filtered_lrelu_cuda(const FilteredLreluArgs& args);  // filtered_lrelu.cu
void filtered_lrelu_cpu(const FilteredLreluArgs& args);   // cpu_emulation.cpp (tests only)

// ---------------------------------------------------------------------------------------------
// The tile plan: sizes of a block's tile and of its shared-memory buffers (in accumulation-type
// elements), laid out as [f1 taps][f2 taps][mid][in][h1], with h2 over in + h1 when it fits (they
// are dead by then) or after them.

struct FlPlan {
  int tile_w = 4, tile_h = 1;  // outputs per block
  int mid_w = 4, mid_h = 1;    // temporary samples per block (mid_w a multiple of 4)
  int in_w = 1, in_h = 1;      // input pixels per block
  int tiles_x = 1, tiles_y = 1;
  int64_t grid_x = 1, rows = 1;
  int grid_y = 1;
  int64_t off_f2 = 0, off_mid = 0, off_in = 0, off_h1 = 0, off_h2 = 0;
  int64_t smem_elems = 0;
  bool ok = false;             // false: even the smallest tile does not fit (huge filters)
};

constexpr int64_t kFlMaxSharedBytes = 48 * 1024;  // the default per-block limit on every GPU

inline int fl_round4(int v) { return (v + 3) / 4 * 4; }

inline FlPlan fl_plan_for(const FilteredLreluParams& p, int max_w, int max_h, int acc_bytes) {
  FlPlan t;
  // As few tiles as max_w x max_h allow, then the smallest tile that covers the output with them
  // (36 outputs: two tiles of 20 rather than 32 + 4).
  t.tiles_x = ceil_div(p.out_w, max_w);
  t.tiles_y = ceil_div(p.out_h, max_h);
  t.tile_w = fl_round4(ceil_div(p.out_w, t.tiles_x));
  t.tile_h = ceil_div(p.out_h, t.tiles_y);
  t.tiles_x = ceil_div(p.out_w, t.tile_w);
  t.mid_w = fl_round4((t.tile_w - 1) * p.down + p.f2w);
  t.mid_h = (t.tile_h - 1) * p.down + p.f2h;
  t.in_w = ceil_div(t.mid_w + p.f1w - 1, p.up);
  t.in_h = ceil_div(t.mid_h + p.f1h - 1, p.up);
  const int64_t f1 = p.f1_sep ? int64_t(p.f1w) + p.f1h : int64_t(p.f1w) * p.f1h;
  const int64_t f2 = p.f2_sep ? int64_t(p.f2w) + p.f2h : int64_t(p.f2w) * p.f2h;
  const int64_t mid = int64_t(t.mid_w) * t.mid_h;
  const int64_t in = int64_t(t.in_w) * t.in_h;
  const int64_t h1 = p.f1_sep ? int64_t(t.in_h) * t.mid_w : 0;
  const int64_t h2 = p.f2_sep ? int64_t(t.mid_h) * t.tile_w : 0;
  t.off_f2 = f1;
  t.off_mid = f1 + f2;
  t.off_in = t.off_mid + mid;
  t.off_h1 = t.off_in + in;
  t.off_h2 = h2 <= in + h1 ? t.off_in : t.off_h1 + h1;
  t.smem_elems = (h2 <= in + h1 ? t.off_h1 + h1 : t.off_h2 + h2);
  t.smem_elems = t.smem_elems > 0 ? t.smem_elems : 1;
  t.grid_x = int64_t(t.tiles_x) * t.tiles_y;
  t.rows = int64_t(p.n) * p.c;
  t.grid_y = int(t.rows < kMaxGridY ? t.rows : kMaxGridY);
  t.ok = t.smem_elems * acc_bytes <= kFlMaxSharedBytes;
  return t;
}

// The largest tile (of 32x32, 32x16, 16x16, ... 4x1 outputs) whose buffers fit in shared memory.
inline FlPlan fl_plan(const FilteredLreluParams& p, int acc_bytes) {
  const int sizes[][2] = {{32, 32}, {32, 16}, {16, 16}, {16, 8}, {8, 8}, {8, 4}, {4, 4}, {4, 2}, {4, 1}};
  FlPlan t;
  for (const auto& s : sizes) {
    t = fl_plan_for(p, s[0], s[1], acc_bytes);
    if (t.ok) break;
  }
  return t;
}

// Where a block's tile lies: plane, first output, first temporary sample, first input pixel, and
// the temporary samples whose mask bits this block owns ([own_x0, own_x1) x [own_y0, own_y1)).
struct FlTile {
  int nn, ch, ox0, oy0, tx0, ty0, ix0, iy0;
  int own_x0, own_x1, own_y0, own_y1;
};

SG_HD FlTile fl_tile(const FilteredLreluParams& p, const FlPlan& t, int64_t bx, int64_t row) {
  FlTile o;
  o.nn = int(row / p.c);
  o.ch = int(row % p.c);
  const int tx = int(bx % t.tiles_x), ty = int(bx / t.tiles_x);
  o.ox0 = tx * t.tile_w;
  o.oy0 = ty * t.tile_h;
  o.tx0 = o.ox0 * p.down - p.q_x0;
  o.ty0 = o.oy0 * p.down - p.q_y0;
  o.ix0 = ceil_div(o.tx0 - p.pad_x0, p.up);  // the first input any temporary sample of the tile reads
  o.iy0 = ceil_div(o.ty0 - p.pad_y0, p.up);
  const bool last_x = tx == t.tiles_x - 1, last_y = ty == t.tiles_y - 1;
  o.own_x0 = o.tx0;
  o.own_y0 = o.ty0;
  o.own_x1 = imin(o.tx0 + (last_x ? t.mid_w : imin(t.tile_w * p.down, t.mid_w)), p.t_w);
  o.own_y1 = imin(o.ty0 + (last_y ? t.mid_h : imin(t.tile_h * p.down, t.mid_h)), p.t_h);
  return o;
}

// Tap k (correlation order) of a 1-D filter, and of a 2-D one.
template <typename A>
SG_HD A fl_tap1(const A* f, int taps, bool flip, int k) {
  return flip ? f[k] : f[taps - 1 - k];
}
template <typename A>
SG_HD A fl_tap2(const A* f, int fw, int fh, bool flip, int ky, int kx) {
  return flip ? f[ky * fw + kx] : f[(fh - 1 - ky) * fw + (fw - 1 - kx)];
}

// Phase 1 (then a barrier): the filters, in correlation order with their gains (a separable
// filter: x taps times the gain, then y taps), and the input pixels plus bias; zeros outside the
// image. Consecutive threads read consecutive x (NCHW); channels_last reads through the strides.
template <typename T, typename A>
SG_HD void fl_load(const FilteredLreluParams& p, const FlPlan& t, const FlTile& o, const T* x, const T* b,
                   const A* f1, const A* f2, int tid, int nthreads, A* smem) {
  const int n1 = p.f1_sep ? p.f1w + p.f1h : p.f1w * p.f1h;
  const int n2 = p.f2_sep ? p.f2w + p.f2h : p.f2w * p.f2h;
  for (int i = tid; i < n1 + n2; i += nthreads) {
    A v;
    if (i < n1) {
      if (p.f1_sep) {
        v = i < p.f1w ? fl_tap1(f1, p.f1w, p.flip1, i) * A(p.gain1) : fl_tap1(f1, p.f1h, p.flip1, i - p.f1w);
      } else {
        v = fl_tap2(f1, p.f1w, p.f1h, p.flip1, i / p.f1w, i % p.f1w) * A(p.gain1);
      }
    } else {
      const int j = i - n1;
      if (p.f2_sep) {
        v = j < p.f2w ? fl_tap1(f2, p.f2w, p.flip2, j) * A(p.gain2) : fl_tap1(f2, p.f2h, p.flip2, j - p.f2w);
      } else {
        v = fl_tap2(f2, p.f2w, p.f2h, p.flip2, j / p.f2w, j % p.f2w) * A(p.gain2);
      }
    }
    FL_ASSERT(i < t.off_mid);
    smem[i] = v;
  }
  A* s_in = smem + t.off_in;
  const A bias = p.has_bias ? static_cast<A>(b[o.ch]) : A(0);
  const T* xp = x + o.nn * p.sxn + o.ch * p.sxc;
  const int count = t.in_w * t.in_h;
  for (int i = tid; i < count; i += nthreads) {
    const int ix = o.ix0 + i % t.in_w, iy = o.iy0 + i / t.in_w;
    A v = A(0);
    if (ix >= 0 && ix < p.in_w && iy >= 0 && iy < p.in_h) {
      const int64_t off = iy * p.sxh + ix * p.sxw;
      FL_ASSERT(o.nn * p.sxn + o.ch * p.sxc + off < p.x_span);
      v = static_cast<A>(xp[off]) + bias;
    }
    s_in[i] = v;
  }
}

// Phase 2, separable stage 1 only (then a barrier): the x pass, h1[r][j] for every input row r of
// the tile and temporary column j. Polyphase: only the taps that land on input samples are read.
template <typename A>
SG_HD void fl_up_x(const FilteredLreluParams& p, const FlPlan& t, const FlTile& o, int tid, int nthreads, A* smem) {
  const A* f = smem;  // x taps
  const A* s_in = smem + t.off_in;
  A* h1 = smem + t.off_h1;
  const int count = t.in_h * t.mid_w;
  for (int i = tid; i < count; i += nthreads) {
    const int j = i % t.mid_w, r = i / t.mid_w;
    const int u0 = o.tx0 + j - p.pad_x0;
    int ix = ceil_div(u0, p.up);
    A acc = A(0);
    for (int k = ix * p.up - u0; k < p.f1w; k += p.up, ++ix) {
      FL_ASSERT(ix - o.ix0 >= 0 && ix - o.ix0 < t.in_w);
      acc += s_in[r * t.in_w + ix - o.ix0] * f[k];
    }
    h1[i] = acc;
  }
}

// The activation of one temporary sample: the forward's leaky ReLU * gain, clamped, and its code;
// or the saved code's factor.
template <typename A>
SG_HD A fl_act(const FilteredLreluParams& p, A v, int& code) {
  if (p.mode == int(FlMode::Masked)) {
    return code == kMaskPos ? v * A(p.act_gain) : code == kMaskNeg ? v * A(p.act_gain * p.slope) : A(0);
  }
  // torch's leaky_relu backward takes the slope at 0; clamp passes the gradient at +-clamp.
  code = v > A(0) ? kMaskPos : kMaskNeg;
  v = (v > A(0) ? v : v * A(p.slope)) * A(p.act_gain);
  if (p.clamp >= 0) {
    const A c = A(p.clamp);
    if (v > c || v < -c) {
      v = v > c ? c : -c;
      code = kMaskZero;
    }
  }
  return v;
}

// Phase 3 (then a barrier): the temporary samples (stage 1's y pass, or the 2-D filter) and the
// activation, four consecutive samples along x per thread (one byte of the mask).
template <typename A>
SG_HD void fl_up_y_act(const FilteredLreluParams& p, const FlPlan& t, const FlTile& o, uint8_t* mask_out,
                       const uint8_t* mask_in, int tid, int nthreads, A* smem) {
  const A* fy = smem + p.f1w;  // y taps (separable)
  const A* f2d = smem;         // 2-D taps
  const A* s_in = smem + t.off_in;
  const A* h1 = smem + t.off_h1;
  A* mid = smem + t.off_mid;
  const int groups_w = t.mid_w / 4;
  const int64_t plane = (int64_t(o.nn) * p.c + o.ch) * p.t_h * p.mask_row;
  for (int g = tid; g < groups_w * t.mid_h; g += nthreads) {
    const int jy = g / groups_w, jx0 = (g % groups_w) * 4;
    const int ty = o.ty0 + jy;
    int byte = 0;
    for (int e = 0; e < 4; ++e) {
      const int jx = jx0 + e, tx = o.tx0 + jx;
      A v = A(0);
      int code = kMaskZero;
      if (tx >= 0 && tx < p.t_w && ty >= 0 && ty < p.t_h) {
        const int v0 = ty - p.pad_y0;
        int iy = ceil_div(v0, p.up);
        if (p.f1_sep) {
          for (int k = iy * p.up - v0; k < p.f1h; k += p.up, ++iy) {
            FL_ASSERT(iy - o.iy0 >= 0 && iy - o.iy0 < t.in_h);
            v += h1[(iy - o.iy0) * t.mid_w + jx] * fy[k];
          }
        } else {
          const int u0 = tx - p.pad_x0;
          const int ix_first = ceil_div(u0, p.up);
          for (int ky = iy * p.up - v0; ky < p.f1h; ky += p.up, ++iy) {
            int ix = ix_first;
            for (int kx = ix * p.up - u0; kx < p.f1w; kx += p.up, ++ix) {
              FL_ASSERT(iy - o.iy0 >= 0 && iy - o.iy0 < t.in_h && ix - o.ix0 >= 0 && ix - o.ix0 < t.in_w);
              v += s_in[(iy - o.iy0) * t.in_w + ix - o.ix0] * f2d[ky * p.f1w + kx];
            }
          }
        }
        if (p.mode == int(FlMode::Masked)) {
          const int64_t at = plane + int64_t(ty) * p.mask_row + (tx >> 2);
          FL_ASSERT(at >= 0 && at < p.mask_span);
          code = (mask_in[at] >> ((tx & 3) * 2)) & 3;
        }
        v = fl_act(p, v, code);
      }
      mid[jy * t.mid_w + jx] = v;
      byte |= code << (e * 2);
    }
    // The tile owns this byte (tx0 + jx0 is a multiple of 4 in the forward): write it once.
    const int tx = o.tx0 + jx0;
    if (p.write_mask && ty >= o.own_y0 && ty < o.own_y1 && tx >= o.own_x0 && tx < o.own_x1) {
      const int64_t at = plane + int64_t(ty) * p.mask_row + (tx >> 2);
      FL_ASSERT((tx & 3) == 0 && at >= 0 && at < p.mask_span);
      mask_out[at] = uint8_t(byte);
    }
  }
}

// Phase 4, separable stage 2 only (then a barrier): the x pass, h2[r][ol] for every temporary row r
// and output column ol of the tile.
template <typename A>
SG_HD void fl_down_x(const FilteredLreluParams& p, const FlPlan& t, int tid, int nthreads, A* smem) {
  const A* f = smem + t.off_f2;
  const A* mid = smem + t.off_mid;
  A* h2 = smem + t.off_h2;
  const int count = t.mid_h * t.tile_w;
  for (int i = tid; i < count; i += nthreads) {
    const int ol = i % t.tile_w, r = i / t.tile_w;
    const A* row = mid + r * t.mid_w + ol * p.down;
    A acc = A(0);
    for (int k = 0; k < p.f2w; ++k) acc += row[k] * f[k];
    h2[i] = acc;
  }
}

// Phase 5 (then a barrier before the next tile): the outputs (stage 2's y pass, or the 2-D
// filter), written in the output's dtype.
template <typename T, typename A>
SG_HD void fl_down_y_store(const FilteredLreluParams& p, const FlPlan& t, const FlTile& o, T* y, int tid,
                           int nthreads, const A* smem) {
  const A* f = smem + t.off_f2;
  const A* mid = smem + t.off_mid;
  const A* h2 = smem + t.off_h2;
  const int count = t.tile_h * t.tile_w;
  for (int i = tid; i < count; i += nthreads) {
    const int olx = i % t.tile_w, oly = i / t.tile_w;
    const int ox = o.ox0 + olx, oy = o.oy0 + oly;
    if (ox >= p.out_w || oy >= p.out_h) continue;
    A acc = A(0);
    if (p.f2_sep) {
      const A* fy = f + p.f2w;
      for (int k = 0; k < p.f2h; ++k) acc += h2[(oly * p.down + k) * t.tile_w + olx] * fy[k];
    } else {
      for (int ky = 0; ky < p.f2h; ++ky) {
        const A* row = mid + (oly * p.down + ky) * t.mid_w + olx * p.down;
        for (int kx = 0; kx < p.f2w; ++kx) acc += row[kx] * f[ky * p.f2w + kx];
      }
    }
    const int64_t out = o.nn * p.syn + o.ch * p.syc + oy * p.syh + ox * p.syw;
    FL_ASSERT(out >= 0 && out < p.y_span);
    y[out] = static_cast<T>(acc);
  }
}

}  // namespace stylegan_ops
