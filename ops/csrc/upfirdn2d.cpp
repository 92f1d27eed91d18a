// upfirdn2d: operator schema, argument checks, memory layout, filter preparation and dispatch.
//
// One operator; its gradient is the same operator with transposed parameters (ops/upfirdn2d.py
// registers that with register_autograd), so derivatives of any order reuse these kernels.
// The production build registers the CUDA kernels; the tests' CPU-emulation build
// (STYLEGAN_OPS_CPU_EMULATION) registers the same host code with the kernels run on the CPU.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <cstdint>
#include <limits>

#include "upfirdn2d.h"

namespace stylegan_ops {
namespace {

using Launcher = void (*)(const UpfirdnArgs&);

DType dtype_of(const at::Tensor& x) {
  switch (x.scalar_type()) {
    case at::kFloat: return DType::Float32;
    case at::kDouble: return DType::Float64;
    case at::kHalf: return DType::Float16;
    case at::kBFloat16: return DType::BFloat16;
    default:
      TORCH_CHECK(false, "upfirdn2d: x must be float32, float64, float16 or bfloat16, got ", x.scalar_type());
  }
}

// Same rule as bias_act.cpp and the fake implementations in ops/upfirdn2d.py.
at::MemoryFormat layout_of(const at::Tensor& t) {
  return !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast) ? at::MemoryFormat::ChannelsLast
                                                                               : at::MemoryFormat::Contiguous;
}

int checked_int(int64_t v, const char* what) {
  TORCH_CHECK(v >= std::numeric_limits<int>::min() && v <= std::numeric_limits<int>::max(), "upfirdn2d: ",
              what, " = ", v, " does not fit the kernels' 32-bit coordinates");
  return int(v);
}

// Output length along one axis; checks that the padded, upsampled input covers the filter.
int64_t out_size(int64_t in, int64_t up, int64_t down, int64_t pad0, int64_t pad1, int64_t taps,
                 const char* axis) {
  TORCH_CHECK(up >= 1 && down >= 1, "upfirdn2d: up", axis, " and down", axis, " must be >= 1, got ", up,
              " and ", down);
  const int64_t span = in * up + pad0 + pad1;
  TORCH_CHECK(span >= taps, "upfirdn2d: along ", axis, ", the input (", in, ") upsampled by ", up,
              " and padded by (", pad0, ", ", pad1, ") is smaller than the filter (", taps,
              " taps); the output would be empty");
  checked_int(in * up + (pad0 < 0 ? -pad0 : pad0) + (pad1 < 0 ? -pad1 : pad1) + taps, "padded size");
  return (span - taps) / down + 1;
}

at::Tensor upfirdn2d_impl(const at::Tensor& x_in, const at::Tensor& f_in, int64_t upx, int64_t upy,
                          int64_t downx, int64_t downy, int64_t padx0, int64_t padx1, int64_t pady0,
                          int64_t pady1, bool flip_filter, double gain, Launcher launch) {
  TORCH_CHECK(x_in.dim() == 4, "upfirdn2d: x must be 4-D [N, C, H, W], got shape ", x_in.sizes());
  UpfirdnArgs a;
  a.dtype = dtype_of(x_in);
  TORCH_CHECK(f_in.dim() == 2 && f_in.numel() > 0, "upfirdn2d: f must be a non-empty 2-D filter [fh, fw], got shape ",
              f_in.sizes());
  TORCH_CHECK(c10::isFloatingType(f_in.scalar_type()), "upfirdn2d: f must be floating-point, got ",
              f_in.scalar_type());
  TORCH_CHECK(f_in.device() == x_in.device(), "upfirdn2d: f must be on x's device ", x_in.device(), ", got ",
              f_in.device());
  const int64_t fh = f_in.size(0), fw = f_in.size(1);
  const int64_t out_w = out_size(x_in.size(3), upx, downx, padx0, padx1, fw, "x");
  const int64_t out_h = out_size(x_in.size(2), upy, downy, pady0, pady1, fh, "y");

  const at::MemoryFormat mf = layout_of(x_in);
  const at::Tensor x = x_in.contiguous(mf);
  at::Tensor y = at::empty({x.size(0), x.size(1), out_h, out_w}, x.options().memory_format(mf));
  if (y.numel() == 0) return y;

  // The kernels flip the filter and apply the gain as they read it; here it only gets the
  // accumulation type (float32, float64 for float64 inputs): usually nothing to do.
  const at::ScalarType acc = a.dtype == DType::Float64 ? at::kDouble : at::kFloat;
  const at::Tensor f = f_in.to(acc).contiguous();

  UpfirdnParams& p = a.p;
  p.n = checked_int(x.size(0), "N");
  p.c = checked_int(x.size(1), "C");
  p.in_h = checked_int(x.size(2), "H");
  p.in_w = checked_int(x.size(3), "W");
  p.out_h = checked_int(out_h, "output height");
  p.out_w = checked_int(out_w, "output width");
  p.upx = checked_int(upx, "upx");
  p.upy = checked_int(upy, "upy");
  p.downx = checked_int(downx, "downx");
  p.downy = checked_int(downy, "downy");
  p.padx0 = checked_int(padx0, "padx0");
  p.pady0 = checked_int(pady0, "pady0");
  p.fw = checked_int(fw, "filter width");
  p.fh = checked_int(fh, "filter height");
  p.flip_filter = flip_filter;
  p.gain = gain;
  p.sxn = x.stride(0);
  p.sxc = x.stride(1);
  p.sxh = x.stride(2);
  p.sxw = x.stride(3);
  p.syn = y.stride(0);
  p.syc = y.stride(1);
  p.syh = y.stride(2);
  p.syw = y.stride(3);
  p.channels_last = mf == at::MemoryFormat::ChannelsLast;
  p.out_numel = y.numel();
  p.x_span = x.numel();
  p.y_span = y.numel();

  a.device = x.device().index();
  a.x = x.const_data_ptr();
  a.f = f.const_data_ptr();
  a.y = y.mutable_data_ptr();
  launch(a);
  return y;
}

#ifdef STYLEGAN_OPS_CPU_EMULATION
#define SG_DISPATCH_KEY CPU
constexpr Launcher kLaunch = upfirdn2d_cpu;
#else
#define SG_DISPATCH_KEY CUDA
constexpr Launcher kLaunch = upfirdn2d_cuda;
#endif

at::Tensor upfirdn2d_op(const at::Tensor& x, const at::Tensor& f, int64_t upx, int64_t upy, int64_t downx,
                        int64_t downy, int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1,
                        bool flip_filter, double gain) {
  return upfirdn2d_impl(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip_filter, gain, kLaunch);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(STYLEGAN_OPS_NS, m) {
  m.def(
      "upfirdn2d(Tensor x, Tensor f, int upx, int upy, int downx, int downy, int padx0, int padx1, "
      "int pady0, int pady1, bool flip_filter, float gain) -> Tensor");
}

TORCH_LIBRARY_IMPL(STYLEGAN_OPS_NS, SG_DISPATCH_KEY, m) {
  m.impl("upfirdn2d", &upfirdn2d_op);
}

}  // namespace stylegan_ops
