// Prepended to every CUDA source in this directory (kernels/src/gpu/source.rs joins
// them): fixed-width types, the function qualifier, and the SplitMix64 generator of
// kernels/src/seed.rs.
//
// Under NVRTC, functions are __device__ and the __global__ kernels are compiled. Any
// other C++ compiler sees plain inline functions and no kernels, which is how the
// kernels crate's tests run this exact code on a machine without a GPU and compare it
// bit for bit with the Rust reference.

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define ZOP_CUDA 1
#define ZOP_FN __device__ __forceinline__
#define ZOP_CONST __constant__
#else
// The host build: plain functions, and the CUDA float intrinsics as the IEEE single
// operations they are (compiled with -ffp-contract=off, so nothing is fused).
#include <cmath>
#include <cstring>
#define ZOP_FN static inline
#define ZOP_CONST static const
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
static inline float __uint_as_float(unsigned int i) { float f; std::memcpy(&f, &i, 4); return f; }
static inline unsigned int __float_as_uint(float f) { unsigned int i; std::memcpy(&i, &f, 4); return i; }
using std::isinf;
using std::isnan;
using std::roundf;
#endif

typedef unsigned long long u64;
typedef unsigned int u32;
typedef unsigned char u8;

#define GAMMA 0x9E3779B97F4A7C15ULL

// seed.rs: mix, stream_key and word.
ZOP_FN u64 mix(u64 z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

ZOP_FN u64 stream_key(u64 seed, u64 stream) { return mix(seed ^ mix(stream)); }

ZOP_FN u64 word(u64 key, u64 index) { return mix(key + (index + 1ULL) * GAMMA); }
