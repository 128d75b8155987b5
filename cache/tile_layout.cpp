#include "cache/tile_layout.h"

#include <algorithm>

#include "runtime/core/check.h"

namespace lr {

TileShape tile_shape_for_block(int64_t block_size) {
    LR_CHECK(block_size > 0, "tile shape: block size must be positive, found ", block_size);
    if (block_size % 8 == 0) return {8, block_size / 8};
    return {1, block_size};
}

TileLayout::TileLayout(int64_t grid_rows, int64_t grid_cols, TileShape tile)
    : gh_(grid_rows), gw_(grid_cols), tile_(tile) {
    LR_CHECK(gh_ > 0 && gw_ > 0 && tile.rows > 0 && tile.cols > 0, "tile layout: a frame of ", gh_, "x", gw_,
             " patches in tiles of ", tile.rows, "x", tile.cols, " (every size must be positive)");
    ty_ = (gh_ + tile.rows - 1) / tile.rows;
    tx_ = (gw_ + tile.cols - 1) / tile.cols;
    const int64_t n = gh_ * gw_;
    to_tiled_.assign(static_cast<size_t>(n), -1);
    to_raster_.reserve(static_cast<size_t>(n));
    tile_of_.reserve(static_cast<size_t>(n));
    for (int64_t y = 0; y < ty_; ++y) {
        for (int64_t x = 0; x < tx_; ++x) {
            const int64_t r0 = y * tile.rows, r1 = std::min(gh_, r0 + tile.rows);
            const int64_t c0 = x * tile.cols, c1 = std::min(gw_, c0 + tile.cols);
            start_.push_back(static_cast<int64_t>(to_raster_.size()));
            len_.push_back((r1 - r0) * (c1 - c0));
            for (int64_t r = r0; r < r1; ++r) {
                for (int64_t c = c0; c < c1; ++c) {
                    to_tiled_[static_cast<size_t>(r * gw_ + c)] = static_cast<int64_t>(to_raster_.size());
                    to_raster_.push_back(r * gw_ + c);
                    tile_of_.push_back(static_cast<int64_t>(start_.size()) - 1);
                }
            }
        }
    }
    LR_ASSERT(static_cast<int64_t>(to_raster_.size()) == n, "tile layout: ", to_raster_.size(), " of ", n, " tokens");
}

}  // namespace lr
