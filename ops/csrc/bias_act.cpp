// bias_act: operator schemas, argument checks, memory layout and dispatch to the kernels.
//
// Three operators, each differentiable through ops/bias_act.py (register_autograd):
//   bias_act(x, b, ...)               -> y
//   bias_act_grad(dy, x, y, b, ...)   -> dx           (needs y or x, see uses_output())
//   bias_act_grad2(ggx, dy, x, y, b)  -> d(x or y)    (the second derivative's extra term)
// The production build registers the CUDA kernels; the tests' CPU-emulation build
// (STYLEGAN_OPS_CPU_EMULATION) registers the same host code with the kernels run on the CPU.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <optional>

#include "bias_act.h"

namespace stylegan_ops {
namespace {

using Launcher = void (*)(const BiasActArgs&);

constexpr const char* kActNames[] = {"linear", "relu", "lrelu", "tanh", "sigmoid",
                                     "elu", "selu", "softplus", "swish"};

int parse_act(c10::string_view act) {
  for (int i = 0; i < int(sizeof(kActNames) / sizeof(kActNames[0])); ++i) {
    if (act == kActNames[i]) return i;
  }
  TORCH_CHECK(false, "bias_act: act='", act,
              "' is not one of linear, relu, lrelu, tanh, sigmoid, elu, selu, softplus, swish");
}

DType dtype_of(const at::Tensor& t, const char* name) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::Float32;
    case at::kDouble: return DType::Float64;
    case at::kHalf: return DType::Float16;
    case at::kBFloat16: return DType::BFloat16;
    default:
      TORCH_CHECK(false, "bias_act: ", name, " must be float32, float64, float16 or bfloat16, got ",
                  t.scalar_type());
  }
}

// The layout every tensor of one call is brought to: channels_last where the reference tensor
// is channels_last (and not also contiguous), else contiguous. ops/bias_act.py's fake
// implementations apply the same rule.
at::MemoryFormat layout_of(const at::Tensor& t) {
  return t.dim() == 4 && !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast)
             ? at::MemoryFormat::ChannelsLast
             : at::MemoryFormat::Contiguous;
}

at::Tensor like(const at::Tensor& t, const at::Tensor& ref, at::MemoryFormat mf, const char* name,
                const char* ref_name) {
  TORCH_CHECK(t.device() == ref.device(), "bias_act: ", name, " must be on ", ref_name, "'s device ",
              ref.device(), ", got ", t.device());
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), "bias_act: ", name, " must have ", ref_name,
              "'s dtype ", ref.scalar_type(), ", got ", t.scalar_type());
  TORCH_CHECK(t.sizes() == ref.sizes(), "bias_act: ", name, " must have ", ref_name, "'s shape ",
              ref.sizes(), ", got ", t.sizes());
  return t.contiguous(mf);
}

// Checks b and the scalars against the (already dense) reference tensor and fills the params.
BiasActParams make_params(const at::Tensor& ref, const char* ref_name, const std::optional<at::Tensor>& b,
                          int64_t dim, int act, double alpha, double gain, std::optional<double> clamp) {
  BiasActParams p;
  p.numel = ref.numel();
  p.act = act;
  p.alpha = alpha;
  p.gain = gain;
  TORCH_CHECK(!clamp.has_value() || *clamp >= 0, "bias_act: clamp must be None or >= 0, got ",
              clamp.value_or(0.0));
  p.clamp = clamp.has_value() ? *clamp : -1.0;
  p.from_output = uses_output(act, alpha);
  if (b.has_value()) {
    TORCH_CHECK(b->device() == ref.device(), "bias_act: b must be on ", ref_name, "'s device ",
                ref.device(), ", got ", b->device());
    TORCH_CHECK(b->scalar_type() == ref.scalar_type(), "bias_act: b must have ", ref_name, "'s dtype ",
                ref.scalar_type(), ", got ", b->scalar_type());
    TORCH_CHECK(dim >= 0 && dim < ref.dim(), "bias_act: dim must be in [0, ", ref.dim(), "), got ", dim);
    TORCH_CHECK(b->dim() == 1 && b->size(0) == ref.size(dim), "bias_act: b must be 1-D of length ",
                ref_name, ".shape[", dim, "] = ", ref.size(dim), ", got shape ", b->sizes());
    p.has_bias = true;
    p.bias_size = ref.size(dim);
    // A size-1 dimension may carry any stride; its index is always 0.
    p.bias_stride = p.bias_size > 1 ? ref.stride(dim) : 1;
  }
  return p;
}

at::Tensor forward(const at::Tensor& x_in, const std::optional<at::Tensor>& b_in, int64_t dim,
                   c10::string_view act, double alpha, double gain, std::optional<double> clamp,
                   Launcher launch) {
  BiasActArgs a;
  a.dtype = dtype_of(x_in, "x");
  const at::MemoryFormat mf = layout_of(x_in);
  const at::Tensor x = x_in.contiguous(mf);
  const std::optional<at::Tensor> b = b_in.has_value() ? std::optional<at::Tensor>(b_in->contiguous()) : std::nullopt;
  a.p = make_params(x, "x", b, dim, parse_act(act), alpha, gain, clamp);
  at::Tensor y = at::empty_like(x, mf);
  if (x.numel() == 0) return y;
  a.mode = BiasActMode::Forward;
  a.device = x.device().index();
  a.x = x.const_data_ptr();
  a.b = b.has_value() ? b->const_data_ptr() : nullptr;
  a.out = y.mutable_data_ptr();
  launch(a);
  return y;
}

// Grad (ggx absent) and Grad2 (ggx present) share their checks.
at::Tensor backward(const std::optional<at::Tensor>& ggx_in, const at::Tensor& dy_in,
                    const std::optional<at::Tensor>& x_in, const std::optional<at::Tensor>& y_in,
                    const std::optional<at::Tensor>& b_in, int64_t dim, c10::string_view act,
                    double alpha, double gain, std::optional<double> clamp, Launcher launch) {
  const int act_id = parse_act(act);
  const bool from_output = uses_output(act_id, alpha);
  const char* op = ggx_in.has_value() ? "bias_act_grad2" : "bias_act_grad";
  const std::optional<at::Tensor>& ref_in = from_output ? y_in : x_in;
  const char* ref_name = from_output ? "y" : "x";
  TORCH_CHECK(ref_in.has_value(), op, ": act='", act, "' (alpha=", alpha, ") computes its gradient from ",
              from_output ? "the output y" : "the input x", ", which was not given");
  BiasActArgs a;
  a.dtype = dtype_of(*ref_in, ref_name);
  const at::MemoryFormat mf = layout_of(*ref_in);
  const at::Tensor ref = ref_in->contiguous(mf);
  const at::Tensor dy = like(dy_in, ref, mf, "dy", ref_name);
  const std::optional<at::Tensor> b = b_in.has_value() ? std::optional<at::Tensor>(b_in->contiguous()) : std::nullopt;
  a.p = make_params(ref, ref_name, b, dim, act_id, alpha, gain, clamp);
  at::Tensor ggx;
  if (ggx_in.has_value()) ggx = like(*ggx_in, ref, mf, "ggx", ref_name);
  at::Tensor out = at::empty_like(ref, mf);
  if (ref.numel() == 0) return out;
  a.mode = ggx_in.has_value() ? BiasActMode::Grad2 : BiasActMode::Grad;
  a.device = ref.device().index();
  (from_output ? a.y : a.x) = ref.const_data_ptr();
  a.b = b.has_value() ? b->const_data_ptr() : nullptr;
  a.dy = dy.const_data_ptr();
  a.ggx = ggx_in.has_value() ? ggx.const_data_ptr() : nullptr;
  a.out = out.mutable_data_ptr();
  launch(a);
  return out;
}

#ifdef STYLEGAN_OPS_CPU_EMULATION
#define SG_DISPATCH_KEY CPU
constexpr Launcher kLaunch = bias_act_cpu;
#else
#define SG_DISPATCH_KEY CUDA
constexpr Launcher kLaunch = bias_act_cuda;
#endif

at::Tensor bias_act_op(const at::Tensor& x, const std::optional<at::Tensor>& b, int64_t dim,
                       c10::string_view act, double alpha, double gain, std::optional<double> clamp) {
  return forward(x, b, dim, act, alpha, gain, clamp, kLaunch);
}

at::Tensor bias_act_grad_op(const at::Tensor& dy, const std::optional<at::Tensor>& x,
                            const std::optional<at::Tensor>& y, const std::optional<at::Tensor>& b,
                            int64_t dim, c10::string_view act, double alpha, double gain,
                            std::optional<double> clamp) {
  return backward(std::nullopt, dy, x, y, b, dim, act, alpha, gain, clamp, kLaunch);
}

at::Tensor bias_act_grad2_op(const at::Tensor& ggx, const at::Tensor& dy, const std::optional<at::Tensor>& x,
                             const std::optional<at::Tensor>& y, const std::optional<at::Tensor>& b,
                             int64_t dim, c10::string_view act, double alpha, double gain,
                             std::optional<double> clamp) {
  return backward(ggx, dy, x, y, b, dim, act, alpha, gain, clamp, kLaunch);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(STYLEGAN_OPS_NS, m) {
  m.def("bias_act(Tensor x, Tensor? b, int dim, str act, float alpha, float gain, float? clamp) -> Tensor");
  m.def(
      "bias_act_grad(Tensor dy, Tensor? x, Tensor? y, Tensor? b, int dim, str act, float alpha, "
      "float gain, float? clamp) -> Tensor");
  m.def(
      "bias_act_grad2(Tensor ggx, Tensor dy, Tensor? x, Tensor? y, Tensor? b, int dim, str act, "
      "float alpha, float gain, float? clamp) -> Tensor");
}

TORCH_LIBRARY_IMPL(STYLEGAN_OPS_NS, SG_DISPATCH_KEY, m) {
  m.impl("bias_act", &bias_act_op);
  m.impl("bias_act_grad", &bias_act_grad_op);
  m.impl("bias_act_grad2", &bias_act_grad2_op);
}

}  // namespace stylegan_ops
