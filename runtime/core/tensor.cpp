#include "runtime/core/tensor.h"

#include <cstdlib>
#include <new>
#include <sstream>
#include <utility>

#include "runtime/core/check.h"

#ifdef LONGROLL_HAS_CUDA
#include <cuda_runtime.h>
#endif

namespace lr {

Shape::Shape(std::initializer_list<int64_t> d) {
    LR_ASSERT(d.size() <= kMaxDims, "shape has ", d.size(), " dims, at most ", kMaxDims, " supported");
    for (int64_t v : d) dims[static_cast<size_t>(ndim++)] = v;
}

Shape Shape::from_span(std::span<const int64_t> d) {
    LR_CHECK(d.size() <= kMaxDims, "shape has ", d.size(), " dims, at most ", kMaxDims, " supported");
    Shape s;
    for (int64_t v : d) s.dims[static_cast<size_t>(s.ndim++)] = v;
    return s;
}

int64_t Shape::numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= dims[static_cast<size_t>(i)];
    return n;
}

bool Shape::operator==(const Shape& o) const {
    if (ndim != o.ndim) return false;
    for (int i = 0; i < ndim; ++i) {
        if (dims[static_cast<size_t>(i)] != o.dims[static_cast<size_t>(i)]) return false;
    }
    return true;
}

std::string Shape::str() const {
    std::ostringstream os;
    os << '[';
    for (int i = 0; i < ndim; ++i) os << (i ? ", " : "") << dims[static_cast<size_t>(i)];
    os << ']';
    return os.str();
}

TensorView::TensorView(void* data_, DType dtype_, const Shape& shape_, Device device_)
    : data(data_), dtype(dtype_), device(device_), shape(shape_) {
    int64_t stride = 1;
    for (int i = shape.ndim - 1; i >= 0; --i) {
        strides[static_cast<size_t>(i)] = stride;
        stride *= shape[i];
    }
}

bool TensorView::is_contiguous() const {
    int64_t stride = 1;
    for (int i = shape.ndim - 1; i >= 0; --i) {
        if (shape[i] != 1 && strides[static_cast<size_t>(i)] != stride) return false;
        stride *= shape[i];
    }
    return true;
}

TensorView TensorView::reshape(const Shape& new_shape) const {
    LR_ASSERT(is_contiguous(), "reshape of a non-contiguous view ", str());
    LR_ASSERT(new_shape.numel() == numel(), "reshape ", shape.str(), " -> ", new_shape.str(), " changes numel");
    return TensorView(data, dtype, new_shape, device);
}

TensorView TensorView::slice0(int64_t begin, int64_t end) const {
    LR_ASSERT(shape.ndim >= 1 && 0 <= begin && begin <= end && end <= shape[0], "slice0 [", begin, ", ", end, ") of ",
              str());
    TensorView v = *this;
    v.data = static_cast<char*>(data) + begin * strides[0] * dtype_size(dtype);
    v.shape[0] = end - begin;
    return v;
}

std::string TensorView::str() const {
    return str_cat(dtype_name(dtype), shape.str(), device == Device::kCpu ? " cpu" : " cuda");
}

// ---- HostBuffer ----------------------------------------------------------------------------------

HostBuffer::HostBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes == 0) return;
    const size_t rounded = (bytes + 63) / 64 * 64;
    data_ = std::aligned_alloc(64, rounded);
    LR_RUNTIME(data_ != nullptr, "out of host memory allocating ", format_bytes(bytes));
}

HostBuffer::~HostBuffer() { std::free(data_); }

HostBuffer::HostBuffer(HostBuffer&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}

HostBuffer& HostBuffer::operator=(HostBuffer&& o) noexcept {
    if (this != &o) {
        std::free(data_);
        data_ = std::exchange(o.data_, nullptr);
        bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
}

// ---- DeviceBuffer --------------------------------------------------------------------------------

DeviceBuffer::DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes == 0) return;
#ifdef LONGROLL_HAS_CUDA
    const cudaError_t err = cudaMalloc(&data_, bytes);
    if (err != cudaSuccess) {
        data_ = nullptr;
        LR_RUNTIME(false, "cudaMalloc of ", format_bytes(bytes), " failed: ", cudaGetErrorString(err));
    }
#else
    LR_RUNTIME(false, "this longroll was built without CUDA; device memory is not available");
#endif
}

DeviceBuffer::~DeviceBuffer() {
#ifdef LONGROLL_HAS_CUDA
    if (data_) cudaFree(data_);
#endif
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
#ifdef LONGROLL_HAS_CUDA
        if (data_) cudaFree(data_);
#endif
        data_ = std::exchange(o.data_, nullptr);
        bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
}

HostTensor::HostTensor(DType dtype, const Shape& shape)
    : buffer(static_cast<size_t>(shape.numel()) * static_cast<size_t>(dtype_size(dtype))),
      view(buffer.data(), dtype, shape) {}

// ---- Arena ---------------------------------------------------------------------------------------

Arena::Arena(Device device, size_t capacity_bytes) : device_(device), capacity_(capacity_bytes) {
    if (device == Device::kCpu) {
        host_ = HostBuffer(capacity_bytes + kAlign);  // room to align the first allocation
        capacity_ = capacity_bytes + kAlign;
        base_ = static_cast<char*>(host_.data());
    } else {
        dev_ = DeviceBuffer(capacity_bytes);
        base_ = static_cast<char*>(dev_.data());
    }
}

void* Arena::alloc_bytes(size_t bytes, const char* what) {
    // Align the address, not the offset: host memory is only 64-byte aligned at the base.
    const auto base = reinterpret_cast<uintptr_t>(base_);
    const size_t start = static_cast<size_t>((base + used_ + kAlign - 1) / kAlign * kAlign - base);
    LR_ASSERT(start + bytes <= capacity_, "arena exhausted allocating ", what, " (", format_bytes(bytes),
              "): ", format_bytes(used_), " of ", format_bytes(capacity_), " planned in use");
    used_ = start + bytes;
    if (used_ > high_water_) high_water_ = used_;
    return base_ + start;
}

TensorView Arena::alloc(DType dtype, const Shape& shape, const char* what) {
    void* p = alloc_bytes(static_cast<size_t>(shape.numel()) * static_cast<size_t>(dtype_size(dtype)), what);
    return TensorView(p, dtype, shape, device_);
}

void Arena::release_to(size_t mark) {
    LR_ASSERT(mark <= used_, "arena release_to(", mark, ") above the used mark ", used_);
    used_ = mark;
}

std::string format_bytes(uint64_t bytes) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = static_cast<double>(bytes);
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        ++u;
    }
    std::ostringstream os;
    os.setf(std::ios::fixed);
    os.precision(u == 0 ? 0 : 2);
    os << v << ' ' << units[u];
    return os.str();
}

}  // namespace lr
