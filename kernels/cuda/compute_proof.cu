// The compute-proof fragment on the GPU (kernels/src/gpu/compute_proof.rs drives it):
// inputs regenerated from the seed on the device, C = A·B by cuBLAS (int8 in, int32
// out), then the commitment: one SHA-256 row digest per row of C and the Merkle levels
// above them (merkle_level, in sha256.cuh). Nothing but the 32-byte root is copied back.
//
// Layout: A is row-major. B is written transposed (Bt[j][k] = B[k][j]) so that cuBLAS
// runs its int8 "TN" form, the layout every int8 tensor-core kernel supports; the product
// it writes is C row-major. Every row is `ld` elements apart, n rounded up to a multiple
// of 4, because cuBLAS's int8 path requires leading dimensions that are multiples of 4;
// the padding is never read.

// Word j of the stream `key` as int8 elements 8j..8j+8 (seed.rs fill_i8): element
// e = r·n + c is stored at r·ld + c, or at c·ld + r with `transpose`.
ZOP_FN void fill_word(u64 key, u64 j, u32 n, u32 ld, u32 transpose, signed char* out) {
    u64 len = (u64)n * n;
    u64 w = word(key, j);
    for (u32 b = 0; b < 8; ++b) {
        u64 e = 8 * j + b;
        if (e >= len) return;
        u64 r = e / n, c = e % n;
        u64 dst = transpose ? c * ld + r : r * ld + c;
        out[dst] = (signed char)(u8)(w >> (8 * b));
    }
}

#ifdef ZOP_CUDA
extern "C" __global__ void fill_i8(u64 key, u32 n, u32 ld, u32 transpose, signed char* out) {
    u64 words = ((u64)n * n + 7) / 8;
    u64 stride = (u64)gridDim.x * blockDim.x;
    for (u64 j = (u64)blockIdx.x * blockDim.x + threadIdx.x; j < words; j += stride) {
        fill_word(key, j, n, ld, transpose, out);
    }
}

// Leaves of the product's tree: tree[32·r ..] = row_digest(row r of c), the row's first n
// of ld entries. One thread a row.
extern "C" __global__ void row_digests(const int* c, u32 n, u32 ld, u8* tree) {
    u64 r = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= n) return;
    row_digest(c + r * ld, n, tree + 32 * r);
}
#endif
