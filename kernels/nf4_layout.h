// The NF4 block layout and codebook, defined once for host and device code.
// Bit-compatible with bitsandbytes (see ../shared/REFERENCE.md A1): two 4-bit codes per byte,
// the FIRST element in the HIGH nibble; one float32 absmax per block of `blocksize` consecutive
// elements of the row-major flattened weight; value = codebook[code] * absmax[i / blocksize].
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define QLORA_HOST_DEVICE __host__ __device__
#else
#define QLORA_HOST_DEVICE
#endif

namespace qlora::nf4 {

inline constexpr int kCodes = 16;
inline constexpr int kDefaultBlocksize = 64;
inline constexpr int kZeroCode = 7;  // Padding code of bitsandbytes (0b0111 == 0.0).

// bitsandbytes' NF4 table (functional.py get_4bit_type("nf4")), in code order.
#define QLORA_NF4_CODEBOOK                                                                              \
  {                                                                                                     \
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,    \
        -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f, \
        0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,          \
        0.7229568362236023f, 1.0f                                                                       \
  }

inline constexpr float kCodebook[kCodes] = QLORA_NF4_CODEBOOK;
static_assert(kCodebook[kZeroCode] == 0.0f, "code 7 must be exactly zero");
static_assert(kCodebook[0] == -1.0f && kCodebook[15] == 1.0f, "codebook spans [-1, 1]");

// Allowed blocksizes, as bitsandbytes' quantize_4bit accepts.
QLORA_HOST_DEVICE constexpr bool valid_blocksize(int64_t blocksize) {
  return blocksize == 32 || blocksize == 64 || blocksize == 128 || blocksize == 256 || blocksize == 512 ||
         blocksize == 1024 || blocksize == 2048 || blocksize == 4096;
}

// Code of element i in a packed buffer.
QLORA_HOST_DEVICE inline uint8_t code_at(const uint8_t* packed, int64_t i) {
  const uint8_t byte = packed[i >> 1];
  return (i & 1) ? static_cast<uint8_t>(byte & 0x0F) : static_cast<uint8_t>(byte >> 4);
}

QLORA_HOST_DEVICE constexpr int64_t packed_bytes(int64_t n) { return (n + 1) / 2; }
QLORA_HOST_DEVICE constexpr int64_t num_blocks(int64_t n, int64_t blocksize) {
  return (n + blocksize - 1) / blocksize;
}

}  // namespace qlora::nf4
