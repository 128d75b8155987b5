// Tensors: a non-owning view (TensorView) and owning buffers (HostBuffer, DeviceBuffer), plus an Arena
// that hands out views from one up-front allocation so that the rollout loop never allocates.
// No class hierarchy: ops take views, buffers own bytes.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>

#include "runtime/core/dtype.h"

namespace lr {

enum class Device : uint8_t { kCpu, kCuda };

inline constexpr int kMaxDims = 6;

// A shape of up to kMaxDims dimensions, stored inline (no allocation).
struct Shape {
    int ndim = 0;
    std::array<int64_t, kMaxDims> dims{};

    Shape() = default;
    Shape(std::initializer_list<int64_t> d);
    static Shape from_span(std::span<const int64_t> d);

    int64_t operator[](int i) const { return dims[static_cast<size_t>(i)]; }
    int64_t& operator[](int i) { return dims[static_cast<size_t>(i)]; }
    int64_t numel() const;
    bool operator==(const Shape& o) const;
    std::string str() const;  // "[2, 3, 4]"
};

// A strided, non-owning view of memory on one device. Strides are in elements.
struct TensorView {
    void* data = nullptr;
    DType dtype = DType::kF32;
    Device device = Device::kCpu;
    Shape shape;
    std::array<int64_t, kMaxDims> strides{};

    TensorView() = default;
    // A contiguous (row-major) view.
    TensorView(void* data, DType dtype, const Shape& shape, Device device = Device::kCpu);

    int ndim() const { return shape.ndim; }
    int64_t size(int i) const { return shape[i < 0 ? i + shape.ndim : i]; }
    int64_t numel() const { return shape.numel(); }
    int64_t nbytes() const { return numel() * dtype_size(dtype); }
    bool is_contiguous() const;

    template <typename T>
    T* as() const {
        return static_cast<T*>(data);
    }

    // A contiguous view with another shape of the same element count.
    TensorView reshape(const Shape& new_shape) const;
    // Rows [begin, end) of dimension 0.
    TensorView slice0(int64_t begin, int64_t end) const;
    std::string str() const;  // "BF16[2, 3] cpu"
};

// Owning, 64-byte aligned host memory. Move-only.
class HostBuffer {
  public:
    HostBuffer() = default;
    explicit HostBuffer(size_t bytes);
    ~HostBuffer();
    HostBuffer(HostBuffer&& o) noexcept;
    HostBuffer& operator=(HostBuffer&& o) noexcept;
    HostBuffer(const HostBuffer&) = delete;
    HostBuffer& operator=(const HostBuffer&) = delete;

    void* data() const { return data_; }
    size_t size() const { return bytes_; }

  private:
    void* data_ = nullptr;
    size_t bytes_ = 0;
};

// Owning device memory (cudaMalloc). Constructing one in a build without CUDA throws RuntimeError.
class DeviceBuffer {
  public:
    DeviceBuffer() = default;
    explicit DeviceBuffer(size_t bytes);
    ~DeviceBuffer();
    DeviceBuffer(DeviceBuffer&& o) noexcept;
    DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;

    void* data() const { return data_; }
    size_t size() const { return bytes_; }

  private:
    void* data_ = nullptr;
    size_t bytes_ = 0;
};

// A host tensor that owns its memory: a buffer and a contiguous view of it.
struct HostTensor {
    HostBuffer buffer;
    TensorView view;

    HostTensor() = default;
    HostTensor(DType dtype, const Shape& shape);
    template <typename T>
    T* as() const {
        return view.as<T>();
    }
};

// Bump allocator over one block of memory reserved up front (host or device). `alloc` never calls the
// system allocator: running out is a planning bug and says how much was planned and asked for.
class Arena {
  public:
    Arena() = default;
    Arena(Device device, size_t capacity_bytes);

    TensorView alloc(DType dtype, const Shape& shape, const char* what = "tensor");
    void* alloc_bytes(size_t bytes, const char* what = "buffer");
    // Frees everything allocated since the matching mark().
    size_t mark() const { return used_; }
    void release_to(size_t mark);
    void reset() { used_ = 0; }

    size_t used() const { return used_; }
    size_t capacity() const { return capacity_; }
    size_t high_water() const { return high_water_; }
    Device device() const { return device_; }

  private:
    static constexpr size_t kAlign = 256;  // cuBLASLt and TMA friendly
    Device device_ = Device::kCpu;
    HostBuffer host_;
    DeviceBuffer dev_;
    char* base_ = nullptr;
    size_t capacity_ = 0;
    size_t used_ = 0;
    size_t high_water_ = 0;
};

// Human-readable byte counts: "1.50 GiB".
std::string format_bytes(uint64_t bytes);

}  // namespace lr
