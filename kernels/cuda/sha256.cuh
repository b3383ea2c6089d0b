// SHA-256 (FIPS 180-4) for the commitments computed on the GPU: the row pieces of
// kernels/src/compute_proof.rs, the chunk leaves of kernels/src/data.rs and the Merkle
// parents of kernels/src/merkle.rs, computed where the data lives so that only 32-byte
// roots ever leave the GPU. Compiled after prelude.cuh.

ZOP_CONST u32 SHA256_K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

ZOP_FN u32 rotr(u32 x, u32 n) { return (x >> n) | (x << (32 - n)); }

ZOP_FN u32 bswap32(u32 x) {
    return (x >> 24) | ((x >> 8) & 0xff00u) | ((x << 8) & 0xff0000u) | (x << 24);
}

ZOP_FN void sha256_init(u32 h[8]) {
    h[0] = 0x6a09e667; h[1] = 0xbb67ae85; h[2] = 0x3c6ef372; h[3] = 0xa54ff53a;
    h[4] = 0x510e527f; h[5] = 0x9b05688c; h[6] = 0x1f83d9ab; h[7] = 0x5be0cd19;
}

// One 64-byte block, given as 16 big-endian words.
ZOP_FN void sha256_block(u32 h[8], const u32 block[16]) {
    u32 w[64];
    for (int t = 0; t < 16; ++t) w[t] = block[t];
    for (int t = 16; t < 64; ++t) {
        u32 s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
        u32 s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
        w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    u32 a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int t = 0; t < 64; ++t) {
        u32 t1 = k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) +
                 SHA256_K[t] + w[t];
        u32 t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += k;
}

ZOP_FN void sha256_out(const u32 h[8], u8* out) {
    for (int i = 0; i < 8; ++i) {
        out[4 * i] = (u8)(h[i] >> 24);
        out[4 * i + 1] = (u8)(h[i] >> 16);
        out[4 * i + 2] = (u8)(h[i] >> 8);
        out[4 * i + 3] = (u8)h[i];
    }
}

// SHA-256 of n little-endian i32s (a piece of a row in compute_proof.rs row_digest). The
// message is a whole number of words, so padding is word-aligned: word n is 0x80000000
// and the last two words of the last block hold the length in bits.
ZOP_FN void words_digest(const int* row, u32 n, u8* out) {
    u64 total = ((u64)n + 3 + 15) / 16 * 16;
    u64 bits = (u64)n * 32;
    u32 h[8];
    u32 block[16];
    sha256_init(h);
    for (u64 base = 0; base < total; base += 16) {
        for (int t = 0; t < 16; ++t) {
            u64 i = base + t;
            block[t] = i < n            ? bswap32((u32)row[i])
                       : i == n         ? 0x80000000u
                       : i == total - 2 ? (u32)(bits >> 32)
                       : i == total - 1 ? (u32)bits
                                        : 0u;
        }
        sha256_block(h, block);
    }
    sha256_out(h, out);
}

// A streaming SHA-256 over bytes, for messages that are not whole words.
struct Sha256 {
    u32 h[8];
    u32 block[16];
    u32 fill;
    u64 total;
};

ZOP_FN void sha256_begin(Sha256* s) {
    sha256_init(s->h);
    s->fill = 0;
    s->total = 0;
}

ZOP_FN void sha256_push(Sha256* s, u8 b) {
    u32 i = s->fill;
    u32 shift = 24 - 8 * (i % 4);
    s->block[i / 4] = (i % 4 == 0 ? 0u : s->block[i / 4]) | ((u32)b << shift);
    if (++s->fill == 64) {
        sha256_block(s->h, s->block);
        s->fill = 0;
    }
}

ZOP_FN void sha256_byte(Sha256* s, u8 b) {
    sha256_push(s, b);
    s->total += 1;
}

ZOP_FN void sha256_finish(Sha256* s, u8* out) {
    u64 bits = s->total * 8;
    sha256_push(s, 0x80);
    while (s->fill != 56) sha256_push(s, 0);
    for (int i = 7; i >= 0; --i) sha256_push(s, (u8)(bits >> (8 * i)));
    sha256_out(s->h, out);
}

// merkle.rs parent: SHA-256(0x01 || left || right).
ZOP_FN void merkle_parent(const u8* left, const u8* right, u8* out) {
    Sha256 s;
    sha256_begin(&s);
    sha256_byte(&s, 0x01);
    for (int i = 0; i < 32; ++i) sha256_byte(&s, left[i]);
    for (int i = 0; i < 32; ++i) sha256_byte(&s, right[i]);
    sha256_finish(&s, out);
}

// Node i of the level above `level` (count nodes): the parent of a pair, or an odd last
// node promoted unchanged, as merkle.rs builds its tree.
ZOP_FN void merkle_node(const u8* level, u32 count, u32 i, u8* out) {
    if (2 * i + 1 < count) {
        merkle_parent(level + 64 * (u64)i, level + 64 * (u64)i + 32, out);
    } else {
        for (int b = 0; b < 32; ++b) out[b] = level[64 * (u64)i + b];
    }
}

#ifdef ZOP_CUDA
// One Merkle level: nodes [first, first + count) of `tree` are hashed pairwise into the
// nodes that follow them, [first + count, first + count + ceil(count / 2)).
extern "C" __global__ void merkle_level(u8* tree, u64 first, u32 count) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= ((u64)count + 1) / 2) return;
    merkle_node(tree + 32 * first, count, (u32)i, tree + 32 * (first + count + i));
}
#endif
