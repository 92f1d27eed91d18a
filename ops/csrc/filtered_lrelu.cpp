// filtered_lrelu: operator schemas, argument checks, memory layout and dispatch to the kernel.
//
// Two operators, differentiable through ops/filtered_lrelu.py (register_autograd):
//   filtered_lrelu(x, fu, fd, b, ...)            -> (y, mask)   the op; mask: the 2-bit codes
//                                                               its backward needs (or empty)
//   filtered_lrelu_masked(x, mask, f1, f2, ...)  -> y           the linear chain with a saved
//                                                               mask: the backward, and the
//                                                               backward of the backward
// The production build registers the CUDA kernel; the tests' CPU-emulation build
// (STYLEGAN_OPS_CPU_EMULATION) registers the same host code with the kernel run on the CPU.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <cstdint>
#include <cstdlib>
#include <limits>
#include <optional>
#include <tuple>

#include "filtered_lrelu.h"

namespace stylegan_ops {
namespace {

using Launcher = void (*)(const FilteredLreluArgs&);

DType dtype_of(const at::Tensor& x, const char* op) {
  switch (x.scalar_type()) {
    case at::kFloat: return DType::Float32;
    case at::kDouble: return DType::Float64;
    case at::kHalf: return DType::Float16;
    case at::kBFloat16: return DType::BFloat16;
    default:
      TORCH_CHECK(false, op, ": x must be float32, float64, float16 or bfloat16, got ", x.scalar_type());
  }
}

// Same rule as the other ops and the fake implementations in ops/filtered_lrelu.py.
at::MemoryFormat layout_of(const at::Tensor& t) {
  return !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast) ? at::MemoryFormat::ChannelsLast
                                                                               : at::MemoryFormat::Contiguous;
}

int checked_int(int64_t v, const char* op, const char* what) {
  TORCH_CHECK(v >= -(int64_t(1) << 30) && v <= (int64_t(1) << 30), op, ": ", what, " = ", v,
              " does not fit the kernel's 32-bit coordinates");
  return int(v);
}

// A filter: 1-D (separable: the same taps along x and y) or 2-D [fh, fw], on x's device; returned
// contiguous in the accumulation type. Sets taps and separability.
at::Tensor prepare_filter(const at::Tensor& f, const at::Tensor& x, at::ScalarType acc, const char* op,
                          const char* name, int& fw, int& fh, bool& sep) {
  TORCH_CHECK((f.dim() == 1 || f.dim() == 2) && f.numel() > 0, op, ": ", name,
              " must be a non-empty 1-D (separable) or 2-D filter, got shape ", f.sizes());
  TORCH_CHECK(c10::isFloatingType(f.scalar_type()), op, ": ", name, " must be floating-point, got ",
              f.scalar_type());
  TORCH_CHECK(f.device() == x.device(), op, ": ", name, " must be on x's device ", x.device(), ", got ",
              f.device());
  sep = f.dim() == 1;
  fw = checked_int(f.size(-1), op, "filter width");
  fh = checked_int(f.size(0), op, "filter height");
  return f.to(acc).contiguous();
}

struct Geometry {
  int64_t up, down, px0, py0, qx0, qy0, t_w, t_h, out_w, out_h;
};

at::Tensor run(const at::Tensor& x_in, const at::Tensor& f1_in, const at::Tensor& f2_in,
               const std::optional<at::Tensor>& b_in, const std::optional<at::Tensor>& mask_in, const Geometry& g,
               double gain1, double gain2, bool flip1, bool flip2, double gain, double slope,
               std::optional<double> clamp, bool write_mask, at::Tensor* mask_out, Launcher launch) {
  const char* op = mask_in.has_value() ? "filtered_lrelu_masked" : "filtered_lrelu";
  TORCH_CHECK(x_in.dim() == 4, op, ": x must be 4-D [N, C, H, W], got shape ", x_in.sizes());
  FilteredLreluArgs a;
  a.dtype = dtype_of(x_in, op);
  const at::ScalarType acc = a.dtype == DType::Float64 ? at::kDouble : at::kFloat;
  FilteredLreluParams& p = a.p;
  const at::Tensor f1 = prepare_filter(f1_in, x_in, acc, op, mask_in.has_value() ? "f1" : "fu", p.f1w, p.f1h, p.f1_sep);
  const at::Tensor f2 = prepare_filter(f2_in, x_in, acc, op, mask_in.has_value() ? "f2" : "fd", p.f2w, p.f2h, p.f2_sep);
  TORCH_CHECK(g.up >= 1 && g.down >= 1, op, ": up and down must be >= 1, got ", g.up, " and ", g.down);
  TORCH_CHECK(g.t_w >= 1 && g.t_h >= 1, op, ": the input (", x_in.size(2), "x", x_in.size(3), ") upsampled by ",
              g.up, ", padded and filtered leaves no samples (", g.t_h, "x", g.t_w, ")");
  TORCH_CHECK(g.out_w >= 1 && g.out_h >= 1, op, ": the output would be empty (", g.out_h, "x", g.out_w, ")");
  TORCH_CHECK(!clamp.has_value() || *clamp >= 0, op, ": clamp must be None or >= 0, got ", clamp.value_or(0.0));
  const int64_t n = x_in.size(0), c = x_in.size(1);

  std::optional<at::Tensor> b;
  if (b_in.has_value()) {
    TORCH_CHECK(b_in->device() == x_in.device(), op, ": b must be on x's device ", x_in.device(), ", got ",
                b_in->device());
    TORCH_CHECK(b_in->scalar_type() == x_in.scalar_type(), op, ": b must have x's dtype ", x_in.scalar_type(),
                ", got ", b_in->scalar_type());
    TORCH_CHECK(b_in->dim() == 1 && b_in->size(0) == c, op, ": b must be 1-D of length x.shape[1] = ", c,
                ", got shape ", b_in->sizes());
    b = b_in->contiguous();
  }
  const int64_t mask_row = (g.t_w + 3) / 4;
  at::Tensor mask;
  if (mask_in.has_value()) {
    TORCH_CHECK(mask_in->scalar_type() == at::kByte, op, ": mask must be uint8, got ", mask_in->scalar_type());
    TORCH_CHECK(mask_in->device() == x_in.device(), op, ": mask must be on x's device ", x_in.device(), ", got ",
                mask_in->device());
    TORCH_CHECK(mask_in->dim() == 4 && mask_in->size(0) == n && mask_in->size(1) == c && mask_in->size(2) == g.t_h &&
                    mask_in->size(3) == mask_row,
                op, ": mask must have shape [N, C, t_h, ceil(t_w / 4)] = [", n, ", ", c, ", ", g.t_h, ", ", mask_row,
                "], got ", mask_in->sizes());
    mask = mask_in->contiguous();
  }

  const at::MemoryFormat mf = layout_of(x_in);
  const at::Tensor x = x_in.contiguous(mf);
  at::Tensor y = at::empty({n, c, g.out_h, g.out_w}, x.options().memory_format(mf));
  if (write_mask) {
    *mask_out = at::zeros({n, c, g.t_h, mask_row}, x.options().dtype(at::kByte));
  } else if (mask_out != nullptr) {
    *mask_out = at::empty({0}, x.options().dtype(at::kByte));
  }
  if (y.numel() == 0) return y;

  p.n = checked_int(n, op, "N");
  p.c = checked_int(c, op, "C");
  p.in_h = checked_int(x.size(2), op, "H");
  p.in_w = checked_int(x.size(3), op, "W");
  p.t_h = checked_int(g.t_h, op, "temporary height");
  p.t_w = checked_int(g.t_w, op, "temporary width");
  p.out_h = checked_int(g.out_h, op, "output height");
  p.out_w = checked_int(g.out_w, op, "output width");
  p.up = checked_int(g.up, op, "up");
  p.down = checked_int(g.down, op, "down");
  p.pad_x0 = checked_int(g.px0, op, "padding x0");
  p.pad_y0 = checked_int(g.py0, op, "padding y0");
  p.q_x0 = checked_int(g.qx0, op, "stage-2 padding x0");
  p.q_y0 = checked_int(g.qy0, op, "stage-2 padding y0");
  checked_int(int64_t(p.in_w) * p.up + p.t_w + p.f1w + p.f2w + std::abs(g.px0) + std::abs(g.qx0), op, "padded width");
  checked_int(int64_t(p.in_h) * p.up + p.t_h + p.f1h + p.f2h + std::abs(g.py0) + std::abs(g.qy0), op, "padded height");
  checked_int(int64_t(p.out_w) * p.down + p.f2w, op, "output span");
  checked_int(int64_t(p.out_h) * p.down + p.f2h, op, "output span");
  p.flip1 = flip1;
  p.flip2 = flip2;
  p.gain1 = gain1;
  p.gain2 = gain2;
  p.mode = int(mask_in.has_value() ? FlMode::Masked : FlMode::Forward);
  p.act_gain = gain;
  p.slope = slope;
  p.clamp = clamp.has_value() ? *clamp : -1.0;
  p.has_bias = b.has_value();
  p.write_mask = write_mask;
  TORCH_CHECK(!write_mask || (g.qx0 == 0 && g.qy0 == 0), op, ": the mask is written by the forward only");
  p.sxn = x.stride(0);
  p.sxc = x.stride(1);
  p.sxh = x.stride(2);
  p.sxw = x.stride(3);
  p.syn = y.stride(0);
  p.syc = y.stride(1);
  p.syh = y.stride(2);
  p.syw = y.stride(3);
  p.mask_row = mask_row;
  p.x_span = x.numel();
  p.y_span = y.numel();
  p.mask_span = n * c * g.t_h * mask_row;
  const FlPlan plan = fl_plan(p, acc == at::kDouble ? 8 : 4);
  TORCH_CHECK(plan.ok, op, ": the filters (", p.f1h, "x", p.f1w, " and ", p.f2h, "x", p.f2w,
              ") are too large for the fused kernel's shared memory; use impl='ref'");
  TORCH_CHECK(plan.grid_x <= kMaxGridX, op, ": too many tiles (", plan.grid_x, ")");

  a.device = x.device().index();
  a.x = x.const_data_ptr();
  a.b = b.has_value() ? b->const_data_ptr() : nullptr;
  a.f1 = f1.const_data_ptr();
  a.f2 = f2.const_data_ptr();
  a.mask_out = write_mask ? mask_out->mutable_data_ptr<uint8_t>() : nullptr;
  a.mask_in = mask_in.has_value() ? mask.const_data_ptr<uint8_t>() : nullptr;
  a.y = y.mutable_data_ptr();
  launch(a);
  return y;
}

#ifdef STYLEGAN_OPS_CPU_EMULATION
#define SG_DISPATCH_KEY CPU
constexpr Launcher kLaunch = filtered_lrelu_cpu;
#else
#define SG_DISPATCH_KEY CUDA
constexpr Launcher kLaunch = filtered_lrelu_cuda;
#endif

int64_t taps(const at::Tensor& f, int axis) {  // axis 0: along x (the last dimension), 1: along y
  return f.dim() == 1 ? f.size(0) : f.size(axis == 0 ? 1 : 0);
}

std::tuple<at::Tensor, at::Tensor> filtered_lrelu_op(const at::Tensor& x, const at::Tensor& fu, const at::Tensor& fd,
                                                     const std::optional<at::Tensor>& b, int64_t up, int64_t down,
                                                     int64_t px0, int64_t px1, int64_t py0, int64_t py1, double gain,
                                                     double slope, std::optional<double> clamp, bool flip_filter,
                                                     bool write_mask) {
  TORCH_CHECK(x.dim() == 4, "filtered_lrelu: x must be 4-D [N, C, H, W], got shape ", x.sizes());
  TORCH_CHECK(fu.dim() >= 1 && fd.dim() >= 1, "filtered_lrelu: fu and fd must be 1-D or 2-D filters");
  TORCH_CHECK(up >= 1 && down >= 1, "filtered_lrelu: up and down must be >= 1, got ", up, " and ", down);
  Geometry g{up, down, px0, py0, 0, 0, 0, 0, 0, 0};
  g.t_w = x.size(3) * up + px0 + px1 - taps(fu, 0) + 1;
  g.t_h = x.size(2) * up + py0 + py1 - taps(fu, 1) + 1;
  g.out_w = g.t_w >= taps(fd, 0) ? (g.t_w - taps(fd, 0)) / down + 1 : 0;
  g.out_h = g.t_h >= taps(fd, 1) ? (g.t_h - taps(fd, 1)) / down + 1 : 0;
  at::Tensor mask;
  at::Tensor y = run(x, fu, fd, b, std::nullopt, g, double(up * up), 1.0, flip_filter, flip_filter, gain, slope, clamp,
                     write_mask, &mask, kLaunch);
  return {y, mask};
}

at::Tensor filtered_lrelu_masked_op(const at::Tensor& x, const at::Tensor& mask, const at::Tensor& f1,
                                    const at::Tensor& f2, int64_t up, int64_t down, int64_t px0, int64_t py0,
                                    int64_t qx0, int64_t qy0, int64_t t_w, int64_t t_h, int64_t out_w, int64_t out_h,
                                    double gain1, double gain2, bool flip1, bool flip2, double gain, double slope) {
  const Geometry g{up, down, px0, py0, qx0, qy0, t_w, t_h, out_w, out_h};
  return run(x, f1, f2, std::nullopt, mask, g, gain1, gain2, flip1, flip2, gain, slope, std::nullopt, false, nullptr,
             kLaunch);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(STYLEGAN_OPS_NS, m) {
  m.def(
      "filtered_lrelu(Tensor x, Tensor fu, Tensor fd, Tensor? b, int up, int down, int px0, int px1, int py0, "
      "int py1, float gain, float slope, float? clamp, bool flip_filter, bool write_mask) -> (Tensor, Tensor)");
  m.def(
      "filtered_lrelu_masked(Tensor x, Tensor mask, Tensor f1, Tensor f2, int up, int down, int px0, int py0, "
      "int qx0, int qy0, int t_w, int t_h, int out_w, int out_h, float gain1, float gain2, bool flip1, bool flip2, "
      "float gain, float slope) -> Tensor");
}

TORCH_LIBRARY_IMPL(STYLEGAN_OPS_NS, SG_DISPATCH_KEY, m) {
  m.impl("filtered_lrelu", &filtered_lrelu_op);
  m.impl("filtered_lrelu_masked", &filtered_lrelu_masked_op);
}

}  // namespace stylegan_ops
