// The compute-proof fragment on the GPU (kernels/src/gpu/compute_proof.rs drives it):
// inputs regenerated from the seed on the device, C = A·B by cuBLAS (int8 in, int32
// out), then the commitment: the SHA-256 of every ROW_CHUNK-element piece of every row
// of C at once, the row trees above them level by level, and the product's tree over the
// row digests (merkle_level, in sha256.cuh). Nothing but the 32-byte root is copied back.
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

#endif

// compute_proof.rs ROW_CHUNK: elements of a row hashed as one leaf of the row's tree.
#define ROW_CHUNK 512u

ZOP_FN u32 row_pieces_of(u32 n) { return (n + ROW_CHUNK - 1) / ROW_CHUNK; }

// Leaf t of the row trees, laid out row by row (k = row_pieces_of(n) a row): the SHA-256
// of piece t % k of row t / k of the product c, whose rows are ld apart.
ZOP_FN void row_piece(const int* c, u32 n, u32 ld, u64 t, u8* leaves) {
    u32 k = row_pieces_of(n);
    u64 r = t / k, j = t % k;
    u32 from = (u32)j * ROW_CHUNK;
    u32 len = n - from < ROW_CHUNK ? n - from : ROW_CHUNK;
    words_digest(c + r * ld + from, len, leaves + 32 * t);
}

// Node t of the next level of every row's tree at once: each of `rows` rows has `count`
// nodes in `level` and gets ceil(count / 2) in `next`, laid out row by row.
ZOP_FN void row_node(const u8* level, u32 count, u64 t, u8* next) {
    u32 half = (count + 1) / 2;
    u64 r = t / half, i = t % half;
    merkle_node(level + 32 * r * count, count, (u32)i, next + 32 * t);
}

#ifdef ZOP_CUDA
// Every piece of every row: n · row_pieces_of(n) threads.
extern "C" __global__ void row_pieces(const int* c, u32 n, u32 ld, u8* leaves) {
    u64 total = (u64)n * row_pieces_of(n);
    u64 stride = (u64)gridDim.x * blockDim.x;
    for (u64 t = (u64)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += stride) {
        row_piece(c, n, ld, t, leaves);
    }
}

// One level of all the row trees; the last level (count 2 or 1 → 1) writes the row
// digests, which are the leaves of the product's tree.
extern "C" __global__ void row_levels(const u8* level, u32 rows, u32 count, u8* next) {
    u64 total = (u64)rows * ((count + 1) / 2);
    u64 stride = (u64)gridDim.x * blockDim.x;
    for (u64 t = (u64)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += stride) {
        row_node(level, count, t, next);
    }
}
#endif
