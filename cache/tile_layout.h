// Blocks are 2D spatial tiles of one latent frame (DESIGN.md section 6): a frame of gh x gw patches is cut
// into tiles of tile_rows x tile_cols patches (the tiles on the bottom and right edges are shorter), and a
// tile's tokens are one KV block, so that a block's mean key summarises a region of the frame rather than a
// strip of raster rows.
//
// The model keeps the reference's token order (frame, row, column): patchify, RoPE positions and every
// per-token op are untouched. The attention step (runtime/model/attention_step.h) owns the tiled order: it
// stores K/V tile by tile (tiled order inside each frame, tiles row-major, tokens row-major inside a tile) and
// permutes the chunk's queries the same way, so that a query block of 128 consecutive tiled rows is (mostly)
// one tile, and the attention output goes back to raster order before the output projection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace lr {

// The tile shape of a KV block of `block_size` tokens: 8 x 16 patches for 128, 8 x 8 for 64, else
// 8 x (block_size / 8) when that divides, else 1 x block_size (a raster strip).
struct TileShape {
    int64_t rows = 0;
    int64_t cols = 0;
};
TileShape tile_shape_for_block(int64_t block_size);

class TileLayout {
  public:
    TileLayout() = default;
    // A frame of grid_rows x grid_cols patches, tiles of `tile` (InputError when a size is not positive).
    TileLayout(int64_t grid_rows, int64_t grid_cols, TileShape tile);

    int64_t grid_rows() const { return gh_; }
    int64_t grid_cols() const { return gw_; }
    TileShape tile() const { return tile_; }
    int64_t tokens_per_frame() const { return gh_ * gw_; }
    int64_t tiles_per_frame() const { return static_cast<int64_t>(start_.size()); }
    int64_t tiles_y() const { return ty_; }
    int64_t tiles_x() const { return tx_; }
    // Tile i (row-major over the tile grid): its first token in the frame's tiled order and its token count.
    int64_t tile_start(int64_t i) const { return start_[static_cast<size_t>(i)]; }
    int64_t tile_len(int64_t i) const { return len_[static_cast<size_t>(i)]; }
    // Raster token r of a frame (row * gw + col) -> its index in the tiled order, and back.
    int64_t to_tiled(int64_t raster) const { return to_tiled_[static_cast<size_t>(raster)]; }
    int64_t to_raster(int64_t tiled) const { return to_raster_[static_cast<size_t>(tiled)]; }
    const std::vector<int64_t>& raster_of_tiled() const { return to_raster_; }
    const std::vector<int64_t>& tiled_of_raster() const { return to_tiled_; }
    // The tile of a tiled-order token.
    int64_t tile_of_tiled(int64_t tiled) const { return tile_of_[static_cast<size_t>(tiled)]; }

  private:
    int64_t gh_ = 0, gw_ = 0, ty_ = 0, tx_ = 0;
    TileShape tile_;
    std::vector<int64_t> start_, len_, to_tiled_, to_raster_, tile_of_;
};

}  // namespace lr
