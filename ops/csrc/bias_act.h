// bias_act: y = clamp(act(x + b) * gain, -clamp, clamp), its gradient and the gradient of the
// gradient (R1 differentiates through D's input gradient), one element at a time.
//
// Backward needs either the output y or the input x (+ b), never both: the derivative of
// linear/relu/lrelu(alpha >= 0)/tanh/sigmoid is a function of the output, that of
// elu/selu/softplus/swish a function of the input. uses_output() is the rule; ops/bias_act.py
// applies the same rule when it decides what to save for backward.
#pragma once

#include <cmath>

#include "common.h"

namespace stylegan_ops {

enum class Act : int { Linear = 0, Relu, Lrelu, Tanh, Sigmoid, Elu, Selu, Softplus, Swish };

// SELU constants (Klambauer et al. 2017), as torch.nn.functional.selu uses them.
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;
// torch.nn.functional.softplus: beta = 1, threshold = 20 (linear above it).
constexpr double kSoftplusThreshold = 20.0;

SG_HD bool uses_output(int act, double alpha) {
  return act == int(Act::Linear) || act == int(Act::Relu) || act == int(Act::Tanh) ||
         act == int(Act::Sigmoid) || (act == int(Act::Lrelu) && alpha >= 0);
}

// What a kernel computes.
enum class BiasActMode : int { Forward = 0, Grad = 1, Grad2 = 2 };

struct BiasActParams {
  int64_t numel = 0;
  int64_t bias_stride = 1;  // memory stride of the bias dimension, in elements
  int64_t bias_size = 1;    // length of the bias dimension
  int act = 0;
  double alpha = 0, gain = 1;
  double clamp = -1;        // < 0: no clamping
  bool has_bias = false;
  bool from_output = false; // Grad/Grad2: the saved tensor is the output y (else the input x)
};

// One launch: a mode, the tensors it reads (nullptr where unused) and the one it writes. All
// tensors share one dense memory layout and dtype; b is 1-D.
struct BiasActArgs {
  BiasActParams p;
  BiasActMode mode = BiasActMode::Forward;
  DType dtype = DType::Float32;
  int device = -1;
  const void* x = nullptr;    // input (Forward; Grad/Grad2 when !from_output)
  const void* b = nullptr;    // bias, or nullptr
  const void* y = nullptr;    // output of Forward (Grad/Grad2 when from_output)
  const void* dy = nullptr;   // incoming gradient (Grad, Grad2)
  const void* ggx = nullptr;  // gradient of Grad's output (Grad2)
  void* out = nullptr;
};

void bias_act_cuda(const BiasActArgs& args);  // bias_act.cu
void bias_act_cpu(const BiasActArgs& args);   // cpu_emulation.cpp (tests only)

SG_HD float sg_exp(float v) { return expf(v); }
SG_HD double sg_exp(double v) { return exp(v); }
SG_HD float sg_expm1(float v) { return expm1f(v); }
SG_HD double sg_expm1(double v) { return expm1(v); }
SG_HD float sg_log1p(float v) { return log1pf(v); }
SG_HD double sg_log1p(double v) { return log1p(v); }
SG_HD float sg_tanh(float v) { return tanhf(v); }
SG_HD double sg_tanh(double v) { return tanh(v); }
SG_HD float sg_abs(float v) { return fabsf(v); }
SG_HD double sg_abs(double v) { return fabs(v); }

template <typename A>
SG_HD A sigmoid(A v) { return A(1) / (A(1) + sg_exp(-v)); }

// The activation (comparisons written so that NaN propagates, as in torch).
template <typename A>
SG_HD A act_forward(int act, A v, A alpha) {
  switch (act) {
    case int(Act::Relu): return v < A(0) ? A(0) : v;
    case int(Act::Lrelu): return v < A(0) ? v * alpha : v;
    case int(Act::Tanh): return sg_tanh(v);
    case int(Act::Sigmoid): return sigmoid(v);
    case int(Act::Elu): return v > A(0) ? v : sg_expm1(v);
    case int(Act::Selu): return A(kSeluScale) * (v > A(0) ? v : A(kSeluAlpha) * sg_expm1(v));
    case int(Act::Softplus): return v > A(kSoftplusThreshold) ? v : sg_log1p(sg_exp(v));
    case int(Act::Swish): return sigmoid(v) * v;
    default: return v;  // linear
  }
}

// act'(v), from the input (every activation; the curved ones are always computed this way).
template <typename A>
SG_HD A act_grad_from_input(int act, A v, A alpha) {
  switch (act) {
    case int(Act::Relu): return v > A(0) ? A(1) : A(0);
    case int(Act::Lrelu): return v > A(0) ? A(1) : alpha;
    case int(Act::Tanh): {
      const A t = sg_tanh(v);
      return A(1) - t * t;
    }
    case int(Act::Sigmoid): {
      const A s = sigmoid(v);
      return s * (A(1) - s);
    }
    case int(Act::Elu): return v > A(0) ? A(1) : sg_exp(v);
    case int(Act::Selu): return v > A(0) ? A(kSeluScale) : A(kSeluScale * kSeluAlpha) * sg_exp(v);
    case int(Act::Softplus): {
      if (v > A(kSoftplusThreshold)) return A(1);
      const A z = sg_exp(v);
      return z / (z + A(1));
    }
    case int(Act::Swish): {
      const A s = sigmoid(v);
      return s * (A(1) + v * (A(1) - s));
    }
    default: return A(1);  // linear
  }
}

// act''(v), from the input (zero for the piecewise-linear activations).
template <typename A>
SG_HD A act_grad2_from_input(int act, A v) {
  switch (act) {
    case int(Act::Tanh): {
      const A t = sg_tanh(v);
      return A(-2) * t * (A(1) - t * t);
    }
    case int(Act::Sigmoid): {
      const A s = sigmoid(v);
      return s * (A(1) - s) * (A(1) - A(2) * s);
    }
    case int(Act::Elu): return v > A(0) ? A(0) : sg_exp(v);
    case int(Act::Selu): return v > A(0) ? A(0) : A(kSeluScale * kSeluAlpha) * sg_exp(v);
    case int(Act::Softplus): {
      if (v > A(kSoftplusThreshold)) return A(0);
      const A s = sigmoid(v);
      return s * (A(1) - s);
    }
    case int(Act::Swish): {
      const A s = sigmoid(v);
      return s * (A(1) - s) * (A(2) + v * (A(1) - A(2) * s));
    }
    default: return A(0);
  }
}

// act'(v) as a function of a = act(v), for the activations whose backward uses the output
// (uses_output()). relu/lrelu: v > 0 exactly when a > 0 (alpha >= 0).
template <typename A>
SG_HD A act_grad_from_output(int act, A a, A alpha) {
  switch (act) {
    case int(Act::Relu): return a > A(0) ? A(1) : A(0);
    case int(Act::Lrelu): return a > A(0) ? A(1) : alpha;
    case int(Act::Tanh): return A(1) - a * a;
    case int(Act::Sigmoid): return a * (A(1) - a);
    default: return A(1);  // linear
  }
}

// d act'(v) / d a for the same activations (zero for the piecewise-linear ones).
template <typename A>
SG_HD A act_grad2_from_output(int act, A a) {
  switch (act) {
    case int(Act::Tanh): return A(-2) * a;
    case int(Act::Sigmoid): return A(1) - A(2) * a;
    default: return A(0);
  }
}

template <typename A>
SG_HD A clamp_value(A s, A c) { return s > c ? c : (s < -c ? -c : s); }

// One element of the chosen mode. Index i is an offset into the dense memory of every tensor.
//   Forward: y = clamp(act(x + b) * gain)
//   Grad:    dx = dy * g,            g = gain * act'(v) * [|gain * act(v)| < clamp]
//   Grad2:   d(ref) = ggx * dy * dg/d(ref), ref = y (from_output) or v = x + b (from input)
template <int MODE, typename T, typename A>
SG_HD T bias_act_element(const BiasActParams& p, const T* x, const T* b, const T* y, const T* dy,
                         const T* ggx, int64_t i) {
  A bias = A(0);
  if (p.has_bias && (MODE == int(BiasActMode::Forward) || !p.from_output)) {
    // 32-bit division where it suffices: it is several times cheaper on a GPU.
    const int64_t c = p.numel <= 0x7fffffff
                          ? int64_t(uint32_t(i) / uint32_t(p.bias_stride) % uint32_t(p.bias_size))
                          : (i / p.bias_stride) % p.bias_size;
    bias = static_cast<A>(b[c]);
  }
  const A alpha = A(p.alpha), gain = A(p.gain), clamp = A(p.clamp);
  const bool clamped = p.clamp >= 0;
  if (MODE == int(BiasActMode::Forward)) {
    A s = act_forward(p.act, static_cast<A>(x[i]) + bias, alpha) * gain;
    if (clamped) s = clamp_value(s, clamp);
    return static_cast<T>(s);
  }
  A g, h;  // g: d out / d pre-activation (with gain); h: d g / d ref
  if (p.from_output) {
    const A out = static_cast<A>(y[i]);
    const bool pass = !clamped || sg_abs(out) < clamp;
    const A a = p.gain != 0 ? out / gain : A(0);
    g = pass ? gain * act_grad_from_output(p.act, a, alpha) : A(0);
    h = pass ? act_grad2_from_output(p.act, a) : A(0);
  } else {
    const A v = static_cast<A>(x[i]) + bias;
    const bool pass = !clamped || sg_abs(act_forward(p.act, v, alpha) * gain) < clamp;
    g = pass ? gain * act_grad_from_input(p.act, v, alpha) : A(0);
    h = pass ? gain * act_grad2_from_input(p.act, v) : A(0);
  }
  if (MODE == int(BiasActMode::Grad)) return static_cast<T>(static_cast<A>(dy[i]) * g);
  return static_cast<T>(static_cast<A>(ggx[i]) * static_cast<A>(dy[i]) * h);
}

}  // namespace stylegan_ops
