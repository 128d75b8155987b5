// make_async_writer (video_writer.h): encoding on a worker thread, so that the producer (the VAE decode
// loop) only pays for a frame copy. A fixed pool of frame buffers cycles between two queues:
//   free_  -> write_frame copies a frame in -> ready_ -> the worker encodes it -> free_
// so memory is queue_capacity frames whatever the speed difference; write_frame blocks while all are queued.
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "runtime/core/check.h"
#include "runtime/video/video_writer.h"

namespace lr {
namespace {

class AsyncWriter final : public VideoWriter {
  public:
    AsyncWriter(std::unique_ptr<VideoWriter> inner, int queue_capacity)
        : inner_(std::move(inner)),
          row_bytes_(int64_t{inner_->spec().width} * 3),
          rows_(inner_->spec().height),
          slots_(static_cast<size_t>(queue_capacity)) {
        for (size_t i = 0; i < slots_.size(); ++i) {
            slots_[i].resize(static_cast<size_t>(row_bytes_ * rows_));
            free_.push_back(i);
        }
        worker_ = std::thread([this] { run_worker(); });
    }

    ~AsyncWriter() override {
        // Without finish(): drop the queued frames; inner_ then removes its temporary file.
        if (worker_.joinable()) {
            {
                std::lock_guard<std::mutex> lock(mu_);
                abort_ = true;
            }
            frame_ready_.notify_all();
            worker_.join();
        }
    }

    AsyncWriter(const AsyncWriter&) = delete;
    AsyncWriter& operator=(const AsyncWriter&) = delete;

    void write_frame(const uint8_t* rgb, int64_t stride_bytes) override {
        LR_ASSERT(!finished_ && !closing_, "write_frame on '", path(), "' after finish()");
        LR_ASSERT(rgb != nullptr && stride_bytes >= row_bytes_, "frame stride ", stride_bytes, " for ", row_bytes_,
                  " bytes per row");
        size_t slot = 0;
        {
            std::unique_lock<std::mutex> lock(mu_);
            slot_free_.wait(lock, [this] { return !free_.empty() || error_ != nullptr; });
            if (error_ != nullptr) std::rethrow_exception(error_);
            slot = free_.front();
            free_.pop_front();
        }
        // The slot belongs to this thread until it is queued: copy without the lock.
        uint8_t* dst = slots_[slot].data();
        for (int r = 0; r < rows_; ++r) std::memcpy(dst + r * row_bytes_, rgb + r * stride_bytes, row_bytes_);
        {
            std::lock_guard<std::mutex> lock(mu_);
            ready_.push_back(slot);
        }
        frame_ready_.notify_one();
        ++accepted_;
    }

    void finish() override {
        if (finished_) return;
        if (worker_.joinable()) {
            {
                std::lock_guard<std::mutex> lock(mu_);
                closing_ = true;
            }
            frame_ready_.notify_all();
            worker_.join();  // returns once every queued frame is encoded, or at the first error
        }
        if (error_ != nullptr) std::rethrow_exception(error_);
        inner_->finish();
        finished_ = true;
    }

    int64_t frames_written() const override { return accepted_; }
    const std::string& path() const override { return inner_->path(); }
    const VideoSpec& spec() const override { return inner_->spec(); }

  private:
    void run_worker() {
        for (;;) {
            size_t slot = 0;
            {
                std::unique_lock<std::mutex> lock(mu_);
                frame_ready_.wait(lock, [this] { return abort_ || closing_ || !ready_.empty(); });
                if (abort_ || ready_.empty()) return;
                slot = ready_.front();
                ready_.pop_front();
            }
            try {
                inner_->write_frame(slots_[slot].data(), row_bytes_);
            } catch (...) {
                {
                    std::lock_guard<std::mutex> lock(mu_);
                    error_ = std::current_exception();
                }
                slot_free_.notify_all();
                return;
            }
            {
                std::lock_guard<std::mutex> lock(mu_);
                free_.push_back(slot);
            }
            slot_free_.notify_one();
        }
    }

    std::unique_ptr<VideoWriter> inner_;  // used by the worker only, until it is joined
    int64_t row_bytes_;
    int rows_;
    std::vector<std::vector<uint8_t>> slots_;  // [queue_capacity][rows * width * 3], allocated up front

    std::mutex mu_;  // guards free_, ready_, error_, closing_, abort_
    std::condition_variable slot_free_;
    std::condition_variable frame_ready_;
    std::deque<size_t> free_;
    std::deque<size_t> ready_;
    std::exception_ptr error_;
    bool closing_ = false;  // finish(): encode what is queued, then stop
    bool abort_ = false;    // destructor: stop now
    std::thread worker_;    // started in the constructor body, once every member it uses exists

    int64_t accepted_ = 0;
    bool finished_ = false;
};

}  // namespace

std::unique_ptr<VideoWriter> make_async_writer(std::unique_ptr<VideoWriter> inner, int queue_capacity) {
    LR_ASSERT(inner != nullptr, "make_async_writer without a writer");
    LR_CHECK(queue_capacity >= 1, "video '", inner->path(), "': the encode queue needs at least 1 frame, found ",
             queue_capacity);
    return std::make_unique<AsyncWriter>(std::move(inner), queue_capacity);
}

}  // namespace lr
