// Softmax-regression gradient kernels: the CUDA port of kernels/src/training/*.rs.
//
// Bit-for-bit contract with the CPU reference (see the module docs of training.rs):
// - The data set is regenerated here from the seed (SplitMix64, as in seed.rs); nothing
//   but the weights is uploaded.
// - Every float operation uses the round-to-nearest intrinsics (__fadd_rn, __fmul_rn,
//   ...), which nvcc never contracts into fused multiply-adds; the CPU reference rounds
//   each product and sum separately.
// - exp and ln are det_exp/det_ln below, the same formulas as training/math.rs, never
//   expf/logf (whose last bit differs from every CPU libm).
// - The gradient kernel gives each entry one thread that sums over samples in shard
//   order, the order of the CPU loop, so the result is identical, not merely close.
//
// Launch order: class_means, then generate_shard, then softmax_residuals, then gradient.
// Compiled after prelude.cuh (types and SplitMix64). Not launched from Rust yet; the
// kernels crate's tests compile it with NVRTC.

#define STREAM_CLASS_MEANS 3ULL
#define STREAM_LABELS 4ULL
#define STREAM_NOISE 5ULL

// Top 24 bits as a fraction in [0, 1): exact.
__device__ __forceinline__ float unit_f32(u64 w) {
    return __fmul_rn((float)(u32)(w >> 40), 1.0f / 16777216.0f);
}

__device__ __forceinline__ float pow2(int k) { return __int_as_float((k + 127) << 23); }

// training/math.rs: exp.
__device__ float det_exp(float x) {
    if (isnan(x)) return x;
    if (x > 88.8f) return __int_as_float(0x7f800000);
    if (x < -104.0f) return 0.0f;
    const float LN2_HI = 0.693359375f;
    const float LN2_LO = -2.12194440e-4f;
    float k = roundf(__fmul_rn(x, 1.44269504f));
    float r = __fsub_rn(__fsub_rn(x, __fmul_rn(k, LN2_HI)), __fmul_rn(k, LN2_LO));
    float p = 1.0f / 5040.0f;
    p = __fadd_rn(__fmul_rn(p, r), 1.0f / 720.0f);
    p = __fadd_rn(__fmul_rn(p, r), 1.0f / 120.0f);
    p = __fadd_rn(__fmul_rn(p, r), 1.0f / 24.0f);
    p = __fadd_rn(__fmul_rn(p, r), 1.0f / 6.0f);
    p = __fadd_rn(__fmul_rn(p, r), 1.0f / 2.0f);
    p = __fadd_rn(__fmul_rn(__fadd_rn(__fmul_rn(p, r), 1.0f), r), 1.0f);
    int ki = (int)k;
    int half = ki / 2;
    return __fmul_rn(__fmul_rn(p, pow2(half)), pow2(ki - half));
}

// training/math.rs: ln, for the loss.
__device__ float det_ln(float x) {
    if (isnan(x) || x < 0.0f) return __int_as_float(0x7fc00000);
    if (x == 0.0f) return __int_as_float(0xff800000);
    if (isinf(x)) return x;
    int e = 0;
    if (x < 1.17549435e-38f) {
        x = __fmul_rn(x, pow2(23));
        e = -23;
    }
    u32 bits = __float_as_uint(x);
    e += (int)(bits >> 23) - 127;
    float m = __uint_as_float((bits & 0x007FFFFFu) | 0x3F800000u);
    if (m > 1.41421356f) {
        m = __fmul_rn(m, 0.5f);
        e += 1;
    }
    float t = __fdiv_rn(__fsub_rn(m, 1.0f), __fadd_rn(m, 1.0f));
    float t2 = __fmul_rn(t, t);
    float s = __fadd_rn(1.0f / 7.0f, __fmul_rn(t2, 1.0f / 9.0f));
    s = __fadd_rn(1.0f / 5.0f, __fmul_rn(t2, s));
    s = __fadd_rn(1.0f / 3.0f, __fmul_rn(t2, s));
    s = __fmul_rn(t2, s);
    float two_t = __fmul_rn(2.0f, t);
    float ln_m = __fadd_rn(two_t, __fmul_rn(two_t, s));
    float ef = (float)e;
    return __fadd_rn(__fmul_rn(ef, 0.693359375f), __fadd_rn(ln_m, __fmul_rn(ef, -2.12194440e-4f)));
}

// means[c*F + f] = 2u - 1; one thread per entry.
extern "C" __global__ void class_means(u64 seed, u32 features, u32 classes, float* means) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (u64)features * classes) return;
    float u = unit_f32(word(stream_key(seed, STREAM_CLASS_MEANS), i));
    means[i] = __fsub_rn(__fmul_rn(2.0f, u), 1.0f);
}

// Work items [start, start + len): x (len × F) and y. One thread per item.
extern "C" __global__ void generate_shard(u64 seed, u32 features, u32 classes, u64 samples,
                                          u64 start, u64 len, const float* means, float* x,
                                          u32* y) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= len) return;
    u64 k = start + i;
    u32 label = (u32)(word(stream_key(seed, STREAM_LABELS), k % samples) % classes);
    y[i] = label;
    u64 noise = stream_key(seed, STREAM_NOISE);
    u64 base = k * (u64)features;
    for (u32 f = 0; f < features; ++f) {
        u64 w = word(noise, base + f);
        float eps = 0.0f;
        for (int j = 0; j < 4; ++j) {
            eps = __fadd_rn(eps, __fmul_rn((float)(u32)((w >> (16 * j)) & 0xFFFFu), 1.0f / 65536.0f));
        }
        eps = __fsub_rn(eps, 2.0f);
        x[i * features + f] = __fadd_rn(means[(u64)label * features + f], eps);
    }
}

// Per sample: logits, softmax, residuals d (N × C) = p - onehot(y), loss and whether the
// prediction is right. One thread per sample; the order within a sample is model.rs's.
extern "C" __global__ void softmax_residuals(const float* w, const float* b, const float* x,
                                             const u32* y, u64 n, u32 features, u32 classes,
                                             float* z, float* d, float* loss, u32* correct) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float* xi = x + i * features;
    float* zi = z + i * classes;
    float* di = d + i * classes;
    u32 arg = 0;
    float m = -__int_as_float(0x7f800000);
    for (u32 c = 0; c < classes; ++c) {
        float acc = 0.0f;
        for (u32 f = 0; f < features; ++f) {
            acc = __fadd_rn(acc, __fmul_rn(w[(u64)c * features + f], xi[f]));
        }
        zi[c] = __fadd_rn(acc, b[c]);
        if (zi[c] > m || c == 0) {
            m = zi[c];
            arg = c;
        }
    }
    float s = 0.0f;
    for (u32 c = 0; c < classes; ++c) {
        di[c] = det_exp(__fsub_rn(zi[c], m));
        s = __fadd_rn(s, di[c]);
    }
    for (u32 c = 0; c < classes; ++c) {
        float p = __fdiv_rn(di[c], s);
        di[c] = c == y[i] ? __fsub_rn(p, 1.0f) : p;
    }
    loss[i] = __fsub_rn(det_ln(s), __fsub_rn(zi[y[i]], m));
    correct[i] = arg == y[i] ? 1u : 0u;
}

// gw[c*F + f] = (sum_i d[i,c] * x[i,f]) / n and gb[c] = (sum_i d[i,c]) / n: one thread
// per entry (F + 1 per class, the last being the bias), samples in order.
extern "C" __global__ void gradient(const float* d, const float* x, u64 n, u32 features,
                                    u32 classes, float* gw, float* gb) {
    u64 t = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    u64 per_class = (u64)features + 1;
    if (t >= per_class * classes) return;
    u32 c = (u32)(t / per_class);
    u32 f = (u32)(t % per_class);
    float acc = 0.0f;
    if (f == features) {
        for (u64 i = 0; i < n; ++i) acc = __fadd_rn(acc, d[i * classes + c]);
        gb[c] = __fdiv_rn(acc, (float)n);
    } else {
        for (u64 i = 0; i < n; ++i) {
            acc = __fadd_rn(acc, __fmul_rn(d[i * classes + c], x[i * features + f]));
        }
        gw[(u64)c * features + f] = __fdiv_rn(acc, (float)n);
    }
}
