// The data-processing fragment on the GPU (kernels/src/gpu/data.rs drives it): one
// thread per chunk regenerates the chunk's bytes from the seed (byte i of the task is
// byte i mod 8 of word i / 8 of the stream, as seed.rs fill_bytes) and computes its leaf
// as kernels/src/data.rs does: SHA-256(0x00 || chunk), or SHA-256(0x00 || token count as
// u64 LE) when tokenizing. The Merkle levels above are sha256.cuh's merkle_level.

// data.rs count_tokens: u8::is_ascii_whitespace.
ZOP_FN int is_space(u8 b) { return b == ' ' || b == '\t' || b == '\n' || b == 0x0c || b == '\r'; }

// The leaf of bytes [from, to) of the stream `key` into `out`; returns the tokens.
ZOP_FN u64 data_leaf(u64 key, u64 from, u64 to, u32 tokenize, u8* out) {
    Sha256 s;
    sha256_begin(&s);
    sha256_byte(&s, 0x00);
    u64 tokens = 0;
    int in_token = 0;
    u64 w = word(key, from / 8);
    for (u64 i = from; i < to; ++i) {
        if (i % 8 == 0) w = word(key, i / 8);
        u8 b = (u8)(w >> (8 * (i % 8)));
        int token = !is_space(b);
        tokens += (u64)(token && !in_token);
        in_token = token;
        if (!tokenize) sha256_byte(&s, b);
    }
    if (tokenize) {
        for (int k = 0; k < 8; ++k) sha256_byte(&s, (u8)(tokens >> (8 * k)));
    }
    sha256_finish(&s, out);
    return tokens;
}

#ifdef ZOP_CUDA
// Leaves 0.. of `tree`, one per chunk of [start, end); the token counts are summed into
// `tokens`.
extern "C" __global__ void data_leaves(u64 key, u64 start, u64 end, u64 chunk, u32 tokenize,
                                       u8* tree, unsigned long long* tokens) {
    u64 c = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    u64 from = start + c * chunk;
    if (c >= (end - start + chunk - 1) / chunk) return;
    u64 to = from + chunk < end ? from + chunk : end;
    u64 t = data_leaf(key, from, to, tokenize, tree + 32 * c);
    atomicAdd(tokens, (unsigned long long)t);
}
#endif
