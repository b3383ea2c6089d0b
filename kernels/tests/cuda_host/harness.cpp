// Runs the device functions of kernels/cuda/ on the host, the way the kernels call
// them, so that a machine without a GPU still checks the CUDA port against the Rust
// reference bit for bit: SplitMix64, the transposed operand, the SHA-256 row pieces and
// row trees, chunk leaves, Merkle levels, the synthetic data, the softmax forward pass,
// the residuals and the gradient. What runs on the host in production (cuBLAS's exact
// integer product, the weight update, quantizing and hashing the gradients) is done here
// the way kernels/src/gpu/*.rs does it.
//
// Usage (each prints what kernels/src/fragment.rs commits to, one value per line):
//   harness compute-proof SEED N PRODUCTS FIRST          root
//   harness data sha256|tokenize SEED START END CHUNK   root, tokens
//   harness training F C SAMPLES SEED START END LR STEPS digest, initial loss, loss, accuracy
//   harness inference F C SAMPLES SEED START END         digest, accuracy
//   harness mlp-training F C SAMPLES SEED START END LR STEPS HIDDEN   as training
//   harness mlp-inference F C SAMPLES SEED START END HIDDEN           as inference

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "prelude.cuh"
#include "sha256.cuh"
#include "compute_proof.cu"
#include "data.cu"
#include "training.cu"

static void print_hex(const u8* h) {
    for (int b = 0; b < 32; ++b) std::printf("%02x", h[b]);
    std::printf("\n");
}

static u64 arg(char** argv, int i) { return std::strtoull(argv[i], nullptr, 10); }

// Nodes of a tree over `leaves` leaves, all levels (compute_proof.rs tree_nodes).
static u64 tree_nodes(u64 leaves) {
    u64 total = leaves;
    for (u64 level = leaves; level > 1;) {
        level = (level + 1) / 2;
        total += level;
    }
    return total;
}

static u64 reduce(std::vector<u8>& tree, u32 count) {
    u64 first = 0;
    while (count > 1) {
        for (u32 i = 0; i < (count + 1) / 2; ++i) {
            merkle_node(&tree[32 * first], count, i, &tree[32 * (first + count + i)]);
        }
        first += count;
        count = (count + 1) / 2;
    }
    return first;
}

static int compute_proof(char** argv) {
    u64 seed = arg(argv, 0);
    u32 n = (u32)arg(argv, 1);
    u32 products = (u32)arg(argv, 2);
    u64 first = arg(argv, 3);
    u64 len = (u64)n * n;
    u32 ld = (n + 3) / 4 * 4;
    std::vector<signed char> a((u64)n * ld), bt((u64)n * ld);
    std::vector<int> c((u64)n * ld);
    std::vector<u8> tree(32 * tree_nodes(n)), roots(32 * tree_nodes(products));
    u64 product_key = stream_key(seed, 2);
    for (u32 slot = 0; slot < products; ++slot) {
        u64 product_seed = word(product_key, first + slot);
        for (u64 j = 0; j < (len + 7) / 8; ++j) {
            fill_word(stream_key(product_seed, 0), j, n, ld, 0, a.data());
            fill_word(stream_key(product_seed, 1), j, n, ld, 1, bt.data());
        }
        // What cuBLAS computes from the TN layout, with leading dimension ld.
        for (u64 i = 0; i < n; ++i) {
            for (u64 j = 0; j < n; ++j) {
                int s = 0;
                for (u64 k = 0; k < n; ++k) s += (int)a[i * ld + k] * (int)bt[j * ld + k];
                c[i * ld + j] = s;
            }
        }
        // The row trees, level by level, as gpu/compute_proof.rs launches them; the
        // last level lands in the product tree's leaves.
        u32 count = row_pieces_of(n);
        std::vector<u8> level(32 * (u64)n * count), next;
        for (u64 t = 0; t < (u64)n * count; ++t) row_piece(c.data(), n, ld, t, level.data());
        while (count > 1) {
            u32 half = (count + 1) / 2;
            next.assign(32 * (u64)n * half, 0);
            for (u64 t = 0; t < (u64)n * half; ++t) row_node(level.data(), count, t, next.data());
            level.swap(next);
            count = half;
        }
        std::memcpy(tree.data(), level.data(), 32 * (u64)n);
        u64 root = reduce(tree, n);
        for (int b = 0; b < 32; ++b) roots[32 * slot + b] = tree[32 * root + b];
    }
    print_hex(&roots[32 * reduce(roots, products)]);
    return 0;
}

static int data(char** argv) {
    u32 tokenize = std::string(argv[0]) == "tokenize";
    u64 key = stream_key(arg(argv, 1), 7);
    u64 start = arg(argv, 2), end = arg(argv, 3), chunk = arg(argv, 4);
    u64 chunks = (end - start + chunk - 1) / chunk;
    std::vector<u8> tree(32 * tree_nodes(chunks));
    u64 tokens = 0;
    for (u64 c = 0; c < chunks; ++c) {
        u64 from = start + c * chunk;
        u64 to = from + chunk < end ? from + chunk : end;
        tokens += data_leaf(key, from, to, tokenize, &tree[32 * c]);
    }
    print_hex(&tree[32 * reduce(tree, (u32)chunks)]);
    std::printf("%llu\n", (unsigned long long)tokens);
    return 0;
}

// training.rs quantize: round(g * 2^20) as i32, saturating, NaN to 0.
static int32_t quantize(float g) {
    float s = roundf(g * 1048576.0f);
    if (isnan(s)) return 0;
    if (s >= 2147483648.0f) return INT32_MAX;
    if (s < -2147483648.0f) return INT32_MIN;
    return (int32_t)s;
}

static void hash_u32(Sha256* h, u32 v) {
    for (int k = 0; k < 4; ++k) sha256_byte(h, (u8)(v >> (8 * k)));
}

static void hash_tag(Sha256* h, const char* tag, u32 f, u32 c) {
    for (const char* t = tag; *t; ++t) sha256_byte(h, (u8)*t);
    hash_u32(h, f);
    hash_u32(h, c);
}

// The data set of a fragment: class means and the shard's features and labels.
struct Shard {
    u32 f, c;
    u64 n;
    std::vector<float> means, x;
    std::vector<u32> y;
};

static Shard shard(char** argv) {
    Shard s;
    s.f = (u32)arg(argv, 0);
    s.c = (u32)arg(argv, 1);
    u64 samples = arg(argv, 2), seed = arg(argv, 3), start = arg(argv, 4), end = arg(argv, 5);
    s.n = end - start;
    s.means.resize((u64)s.f * s.c);
    for (u64 i = 0; i < s.means.size(); ++i) class_mean(seed, i, s.means.data());
    s.x.resize(s.n * s.f);
    s.y.resize(s.n);
    for (u64 i = 0; i < s.n; ++i) {
        shard_item(seed, s.f, s.c, samples, start, i, s.means.data(), s.x.data(), s.y.data());
    }
    return s;
}

// Loss (summed in double, in order) and correct predictions of one evaluation.
struct Eval {
    double loss;
    u64 correct;
};

static Eval residuals(const Shard& s, const std::vector<float>& w, const std::vector<float>& b,
                      std::vector<float>& d) {
    std::vector<float> z(s.n * s.c), loss(s.n);
    Eval e = {0.0, 0};
    for (u64 i = 0; i < s.n; ++i) {
        u32 arg = residual_sample(w.data(), b.data(), s.x.data(), s.y.data(), i, s.f, s.c,
                                  z.data(), d.data(), loss.data());
        e.loss += (double)loss[i];
        e.correct += arg == s.y[i];
    }
    return e;
}

static int training(char** argv) {
    Shard s = shard(argv);
    u64 seed = arg(argv, 3);
    float lr = std::strtof(argv[6], nullptr);
    u32 steps = (u32)arg(argv, 7);
    // model.rs Model::initial.
    std::vector<float> w((u64)s.f * s.c), b(s.c, 0.0f);
    u64 key = stream_key(seed, 6);
    for (u64 i = 0; i < w.size(); ++i) w[i] = (2.0f * unit_f32(word(key, i)) - 1.0f) * 0.01f;
    Sha256 h;
    sha256_begin(&h);
    hash_tag(&h, "zop/training/v1", s.f, s.c);
    std::vector<float> d(s.n * s.c), gw(w.size()), gb(s.c);
    double initial = 0.0;
    for (u32 step = 0; step < steps; ++step) {
        Eval e = residuals(s, w, b, d);
        if (step == 0) initial = e.loss / (double)s.n;
        for (u64 t = 0; t < ((u64)s.f + 1) * s.c; ++t) {
            gradient_entry(d.data(), s.x.data(), s.n, s.f, s.c, t, gw.data(), gb.data());
        }
        for (float g : gw) hash_u32(&h, (u32)quantize(g));
        for (float g : gb) hash_u32(&h, (u32)quantize(g));
        for (u64 i = 0; i < w.size(); ++i) w[i] -= lr * gw[i];
        for (u32 c = 0; c < s.c; ++c) b[c] -= lr * gb[c];
    }
    Eval end = residuals(s, w, b, d);
    u8 digest[32];
    sha256_finish(&h, digest);
    print_hex(digest);
    std::printf("%.6f\n%.6f\n%.6f\n", initial, end.loss / (double)s.n,
                (double)end.correct / (double)s.n);
    return 0;
}

// inference.rs: the Merkle root over one leaf per sample (0x00, prediction, quantized
// probabilities), then the accuracy.
static int print_inference(const Shard& s, const std::vector<u32>& pred,
                           const std::vector<float>& p) {
    std::vector<u8> tree(32 * tree_nodes(s.n));
    u64 correct = 0;
    for (u64 i = 0; i < s.n; ++i) {
        correct += pred[i] == s.y[i];
        Sha256 h;
        sha256_begin(&h);
        sha256_byte(&h, 0x00);
        hash_u32(&h, pred[i]);
        for (u32 c = 0; c < s.c; ++c) hash_u32(&h, (u32)quantize(p[i * s.c + c]));
        sha256_finish(&h, &tree[32 * i]);
    }
    print_hex(&tree[32 * reduce(tree, (u32)s.n)]);
    std::printf("%.6f\n", (double)correct / (double)s.n);
    return 0;
}

static int inference(char** argv) {
    Shard s = shard(argv);
    // model.rs Model::reference.
    float inv_var = 1.0f / (1.0f / 3.0f);
    std::vector<float> w(s.means.size()), b(s.c);
    for (u64 i = 0; i < w.size(); ++i) w[i] = s.means[i] * inv_var;
    for (u32 c = 0; c < s.c; ++c) {
        float sq = 0.0f;
        for (u32 f = 0; f < s.f; ++f) sq = sq + s.means[(u64)c * s.f + f] * s.means[(u64)c * s.f + f];
        b[c] = -0.5f * inv_var * sq;
    }
    std::vector<float> z(s.n * s.c), p(s.n * s.c), loss(s.n);
    std::vector<u32> pred(s.n);
    for (u64 i = 0; i < s.n; ++i) {
        pred[i] = forward_sample(w.data(), b.data(), s.x.data(), s.y.data(), i, s.f, s.c,
                                 z.data(), p.data(), loss.data());
    }
    return print_inference(s, pred, p);
}

// mlp.rs Mlp::initial: V uniform in +-1/sqrt(F) from words 0.., W in +-1/sqrt(H) after.
struct Mlp {
    u32 h;
    std::vector<float> v, cb, w, b;
};

static Mlp mlp_initial(const Shard& s, u32 hidden, u64 seed) {
    Mlp m;
    m.h = hidden;
    u64 key = stream_key(seed, 6);
    float rv = 1.0f / sqrtf((float)s.f), rw = 1.0f / sqrtf((float)hidden);
    m.v.resize((u64)hidden * s.f);
    for (u64 i = 0; i < m.v.size(); ++i) m.v[i] = (2.0f * unit_f32(word(key, i)) - 1.0f) * rv;
    m.w.resize((u64)s.c * hidden);
    for (u64 i = 0; i < m.w.size(); ++i) {
        m.w[i] = (2.0f * unit_f32(word(key, m.v.size() + i)) - 1.0f) * rw;
    }
    m.cb.assign(hidden, 0.0f);
    m.b.assign(s.c, 0.0f);
    return m;
}

// One evaluation: residuals d and backpropagated e, with the loss and correct count.
static Eval mlp_residuals(const Shard& s, const Mlp& m, std::vector<float>& hid,
                          std::vector<float>& d, std::vector<float>& e) {
    std::vector<float> z(s.n * s.c), loss(s.n);
    Eval r = {0.0, 0};
    for (u64 i = 0; i < s.n; ++i) {
        u32 arg = mlp_residual_sample(m.v.data(), m.cb.data(), m.w.data(), m.b.data(), s.x.data(),
                                      s.y.data(), i, s.f, m.h, s.c, hid.data(), z.data(), d.data(),
                                      e.data(), loss.data());
        r.loss += (double)loss[i];
        r.correct += arg == s.y[i];
    }
    return r;
}

static void hash_quantized(Sha256* h, const std::vector<float>& g) {
    for (float v : g) hash_u32(h, (u32)quantize(v));
}

static void descend(std::vector<float>& p, const std::vector<float>& g, float lr) {
    for (u64 i = 0; i < p.size(); ++i) p[i] -= lr * g[i];
}

// harness mlp-training F C SAMPLES SEED START END LR STEPS HIDDEN
static int mlp_training(char** argv) {
    Shard s = shard(argv);
    float lr = std::strtof(argv[6], nullptr);
    u32 steps = (u32)arg(argv, 7), hidden = (u32)arg(argv, 8);
    Mlp m = mlp_initial(s, hidden, arg(argv, 3));
    Sha256 h;
    sha256_begin(&h);
    hash_tag(&h, "zop/training/mlp/v1", s.f, hidden);
    hash_u32(&h, s.c);
    std::vector<float> hid(s.n * hidden), d(s.n * s.c), e(s.n * hidden);
    std::vector<float> gv(m.v.size()), gc(hidden), gw(m.w.size()), gb(s.c);
    double initial = 0.0;
    for (u32 step = 0; step < steps; ++step) {
        Eval r = mlp_residuals(s, m, hid, d, e);
        if (step == 0) initial = r.loss / (double)s.n;
        for (u64 t = 0; t < ((u64)hidden + 1) * s.c; ++t) {
            gradient_entry(d.data(), hid.data(), s.n, hidden, s.c, t, gw.data(), gb.data());
        }
        for (u64 t = 0; t < ((u64)s.f + 1) * hidden; ++t) {
            gradient_entry(e.data(), s.x.data(), s.n, s.f, hidden, t, gv.data(), gc.data());
        }
        hash_quantized(&h, gv);
        hash_quantized(&h, gc);
        hash_quantized(&h, gw);
        hash_quantized(&h, gb);
        descend(m.v, gv, lr);
        descend(m.cb, gc, lr);
        descend(m.w, gw, lr);
        descend(m.b, gb, lr);
    }
    Eval end = mlp_residuals(s, m, hid, d, e);
    u8 digest[32];
    sha256_finish(&h, digest);
    print_hex(digest);
    std::printf("%.6f\n%.6f\n%.6f\n", initial, end.loss / (double)s.n,
                (double)end.correct / (double)s.n);
    return 0;
}

// harness mlp-inference F C SAMPLES SEED START END HIDDEN: mlp.rs Mlp::reference.
static int mlp_inference(char** argv) {
    Shard s = shard(argv);
    u32 hidden = (u32)arg(argv, 6);
    float inv_var = 1.0f / (1.0f / 3.0f);
    Mlp m;
    m.h = hidden;
    m.v.assign((u64)hidden * s.f, 0.0f);
    m.cb.assign(hidden, 0.0f);
    m.w.assign((u64)s.c * hidden, 0.0f);
    m.b.assign(s.c, -1.0e4f);
    for (u32 k = 0; k < s.c && k < hidden / 2; ++k) {
        float sq = 0.0f;
        for (u32 f = 0; f < s.f; ++f) sq = sq + s.means[(u64)k * s.f + f] * s.means[(u64)k * s.f + f];
        float bias = -0.5f * inv_var * sq;
        for (int side = 0; side < 2; ++side) {
            float sign = side == 0 ? 1.0f : -1.0f;
            u32 j = 2 * k + side;
            for (u32 f = 0; f < s.f; ++f) {
                m.v[(u64)j * s.f + f] = sign * (s.means[(u64)k * s.f + f] * inv_var);
            }
            m.cb[j] = sign * bias;
            m.w[(u64)k * hidden + j] = sign;
        }
        m.b[k] = 0.0f;
    }
    std::vector<float> hid(s.n * hidden), z(s.n * s.c), p(s.n * s.c), loss(s.n);
    std::vector<u32> pred(s.n);
    for (u64 i = 0; i < s.n; ++i) {
        hidden_sample(m.v.data(), m.cb.data(), s.x.data(), i, s.f, hidden, hid.data());
        pred[i] = forward_sample(m.w.data(), m.b.data(), hid.data(), s.y.data(), i, hidden, s.c,
                                 z.data(), p.data(), loss.data());
    }
    return print_inference(s, pred, p);
}

int main(int argc, char** argv) {
    std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "compute-proof" && argc == 6) return compute_proof(argv + 2);
    if (cmd == "data" && argc == 7) return data(argv + 2);
    if (cmd == "training" && argc == 10) return training(argv + 2);
    if (cmd == "inference" && argc == 8) return inference(argv + 2);
    if (cmd == "mlp-training" && argc == 11) return mlp_training(argv + 2);
    if (cmd == "mlp-inference" && argc == 9) return mlp_inference(argv + 2);
    std::fprintf(stderr, "usage: see the comment at the top of harness.cpp\n");
    return 2;
}
