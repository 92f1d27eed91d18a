// DType -> element type, for the launchers of the CUDA kernels and of the CPU emulation. Kept
// free of ATen so the .cu files compile without the heavy PyTorch headers.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <stdexcept>

#include "common.h"

namespace stylegan_ops {

template <typename T>
struct AccType {
  using type = float;  // float32, float16, bfloat16: accumulate in float32
};
template <>
struct AccType<double> {
  using type = double;
};
template <typename T>
using AccT = typename AccType<T>::type;

// Calls fn(T{}) with T the element type of dtype.
template <typename Fn>
void dispatch_dtype(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::Float32: fn(float{}); return;
    case DType::Float64: fn(double{}); return;
    case DType::Float16: fn(c10::Half{}); return;
    case DType::BFloat16: fn(c10::BFloat16{}); return;
  }
  throw std::invalid_argument("stylegan_ops: unsupported dtype");
}

}  // namespace stylegan_ops
