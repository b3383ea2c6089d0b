// Softmax regression on the GPU: the CUDA port of kernels/src/training/*.rs and of the
// forward pass of kernels/src/inference.rs (kernels/src/gpu/training.rs drives it).
//
// Bit-for-bit contract with the CPU reference (see the module docs of training.rs):
// - The data set is regenerated here from the seed (SplitMix64, prelude.cuh); nothing
//   but the model's weights is uploaded.
// - Every float operation uses the round-to-nearest intrinsics (__fadd_rn, __fmul_rn,
//   ...), which nvcc never contracts into fused multiply-adds; the CPU reference rounds
//   each product and sum separately.
// - exp and ln are det_exp/det_ln below, the same formulas as training/math.rs, never
//   expf/logf (whose last bit differs from every CPU libm).
// - The gradient gives each entry one thread that sums over samples in shard order, the
//   order of the CPU loop, so the result is identical, not merely close.
//
// Each kernel is a thin loop over a device function of one index; the kernels crate's
// tests run those functions on the host and compare with the Rust reference.
// Launch order: class_means, generate_shard, then per step softmax_residuals and gradient
// (training) or softmax_forward (inference); for a perceptron (training/mlp.rs),
// mlp_residuals and gradient twice, or mlp_forward.

#define STREAM_CLASS_MEANS 3ULL
#define STREAM_LABELS 4ULL
#define STREAM_NOISE 5ULL

// Top 24 bits as a fraction in [0, 1): exact.
ZOP_FN float unit_f32(u64 w) {
    return __fmul_rn((float)(u32)(w >> 40), 1.0f / 16777216.0f);
}

ZOP_FN float pow2(int k) { return __int_as_float((k + 127) << 23); }

// training/math.rs: exp.
ZOP_FN float det_exp(float x) {
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
ZOP_FN float det_ln(float x) {
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

// synthetic.rs DataSet::new: means[i] = 2u - 1, i = c*F + f.
ZOP_FN void class_mean(u64 seed, u64 i, float* means) {
    float u = unit_f32(word(stream_key(seed, STREAM_CLASS_MEANS), i));
    means[i] = __fsub_rn(__fmul_rn(2.0f, u), 1.0f);
}

// synthetic.rs DataSet::shard: item start + i into row i of x (F wide) and y[i].
ZOP_FN void shard_item(u64 seed, u32 features, u32 classes, u64 samples, u64 start, u64 i,
                       const float* means, float* x, u32* y) {
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

// model.rs logits_into and softmax for sample i: logits into z, probabilities into p
// (both C wide); returns the prediction (the first of tied maxima) and writes the loss.
ZOP_FN u32 forward_sample(const float* w, const float* b, const float* x, const u32* y, u64 i,
                          u32 features, u32 classes, float* z, float* p, float* loss) {
    const float* xi = x + i * features;
    float* zi = z + i * classes;
    float* pi = p + i * classes;
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
        pi[c] = det_exp(__fsub_rn(zi[c], m));
        s = __fadd_rn(s, pi[c]);
    }
    for (u32 c = 0; c < classes; ++c) pi[c] = __fdiv_rn(pi[c], s);
    float zy = y[i] < classes ? zi[y[i]] : __int_as_float(0x7fc00000);
    loss[i] = __fsub_rn(det_ln(s), __fsub_rn(zy, m));
    return arg;
}

// training.rs evaluate, the residuals: d = p - onehot(y), in place of p.
ZOP_FN u32 residual_sample(const float* w, const float* b, const float* x, const u32* y, u64 i,
                           u32 features, u32 classes, float* z, float* d, float* loss) {
    u32 arg = forward_sample(w, b, x, y, i, features, classes, z, d, loss);
    float* di = d + i * classes;
    if (y[i] < classes) di[y[i]] = __fsub_rn(di[y[i]], 1.0f);
    return arg;
}

// training.rs evaluate, entry t of the gradient: gw[c*F + f] = (sum_i d[i,c] x[i,f]) / n,
// and gb[c] = (sum_i d[i,c]) / n for the last entry of each class (F + 1 per class).
ZOP_FN void gradient_entry(const float* d, const float* x, u64 n, u32 features, u32 classes,
                           u64 t, float* gw, float* gb) {
    u64 per_class = (u64)features + 1;
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

// mlp.rs activations_into for sample i: h[i,j] = max(0, V_j . x_i + c_j), NaN to 0.
ZOP_FN void hidden_sample(const float* v, const float* cb, const float* x, u64 i, u32 features,
                          u32 hidden, float* h) {
    const float* xi = x + i * features;
    float* hi = h + i * hidden;
    for (u32 j = 0; j < hidden; ++j) {
        float acc = 0.0f;
        for (u32 f = 0; f < features; ++f) {
            acc = __fadd_rn(acc, __fmul_rn(v[(u64)j * features + f], xi[f]));
        }
        float a = __fadd_rn(acc, cb[j]);
        hi[j] = a > 0.0f ? a : 0.0f;
    }
}

// mlp.rs evaluate for sample i: the output layer's residuals d (C wide) as softmax
// regression on h, then e[i,j] = sum_k W[k,j] d[i,k] for active units, else 0.
ZOP_FN u32 mlp_residual_sample(const float* v, const float* cb, const float* w, const float* b,
                               const float* x, const u32* y, u64 i, u32 features, u32 hidden,
                               u32 classes, float* h, float* z, float* d, float* e,
                               float* loss) {
    hidden_sample(v, cb, x, i, features, hidden, h);
    u32 arg = residual_sample(w, b, h, y, i, hidden, classes, z, d, loss);
    const float* hi = h + i * hidden;
    const float* di = d + i * classes;
    float* ei = e + i * hidden;
    for (u32 j = 0; j < hidden; ++j) {
        float acc = 0.0f;
        if (hi[j] > 0.0f) {
            for (u32 k = 0; k < classes; ++k) {
                acc = __fadd_rn(acc, __fmul_rn(w[(u64)k * hidden + j], di[k]));
            }
        }
        ei[j] = acc;
    }
    return arg;
}

#ifdef ZOP_CUDA
#define ZOP_INDEX ((u64)blockIdx.x * blockDim.x + threadIdx.x)

extern "C" __global__ void class_means(u64 seed, u32 features, u32 classes, float* means) {
    u64 i = ZOP_INDEX;
    if (i < (u64)features * classes) class_mean(seed, i, means);
}

extern "C" __global__ void generate_shard(u64 seed, u32 features, u32 classes, u64 samples,
                                          u64 start, u64 len, const float* means, float* x,
                                          u32* y) {
    u64 i = ZOP_INDEX;
    if (i < len) shard_item(seed, features, classes, samples, start, i, means, x, y);
}

extern "C" __global__ void softmax_residuals(const float* w, const float* b, const float* x,
                                             const u32* y, u64 n, u32 features, u32 classes,
                                             float* z, float* d, float* loss, u32* correct) {
    u64 i = ZOP_INDEX;
    if (i >= n) return;
    u32 arg = residual_sample(w, b, x, y, i, features, classes, z, d, loss);
    correct[i] = arg == y[i] ? 1u : 0u;
}

extern "C" __global__ void softmax_forward(const float* w, const float* b, const float* x,
                                           const u32* y, u64 n, u32 features, u32 classes,
                                           float* z, float* p, float* loss, u32* pred) {
    u64 i = ZOP_INDEX;
    if (i < n) pred[i] = forward_sample(w, b, x, y, i, features, classes, z, p, loss);
}

extern "C" __global__ void gradient(const float* d, const float* x, u64 n, u32 features,
                                    u32 classes, float* gw, float* gb) {
    u64 t = ZOP_INDEX;
    if (t < ((u64)features + 1) * classes) gradient_entry(d, x, n, features, classes, t, gw, gb);
}
// The perceptron's gradients are two launches of `gradient`: (d, h) for the output
// layer and (e, x) for the hidden one.
extern "C" __global__ void mlp_residuals(const float* v, const float* cb, const float* w,
                                         const float* b, const float* x, const u32* y, u64 n,
                                         u32 features, u32 hidden, u32 classes, float* h,
                                         float* z, float* d, float* e, float* loss,
                                         u32* correct) {
    u64 i = ZOP_INDEX;
    if (i >= n) return;
    u32 arg = mlp_residual_sample(v, cb, w, b, x, y, i, features, hidden, classes, h, z, d, e,
                                  loss);
    correct[i] = arg == y[i] ? 1u : 0u;
}

extern "C" __global__ void mlp_forward(const float* v, const float* cb, const float* w,
                                       const float* b, const float* x, const u32* y, u64 n,
                                       u32 features, u32 hidden, u32 classes, float* h,
                                       float* z, float* p, float* loss, u32* pred) {
    u64 i = ZOP_INDEX;
    if (i >= n) return;
    hidden_sample(v, cb, x, i, features, hidden, h);
    pred[i] = forward_sample(w, b, h, y, i, hidden, classes, z, p, loss);
}
#endif
