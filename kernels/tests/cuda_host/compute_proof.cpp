// Runs the device functions of kernels/cuda/ on the host, the way the compute-proof
// kernels call them, so that a machine without a GPU still checks the CUDA port
// (SplitMix64, the transposed operand, SHA-256 row digests, Merkle levels) against the
// Rust reference bit for bit. Only cuBLAS's product is replaced, by the exact integer
// product over the same TN layout.
//
// Usage: compute_proof SEED N PRODUCTS FIRST
// Prints the fragment root (hex) of products FIRST..FIRST+PRODUCTS of the task with
// SEED and matrix size N, as fragment::execute_range computes it.

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "prelude.cuh"
#include "sha256.cuh"
#include "compute_proof.cu"

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

int main(int argc, char** argv) {
    if (argc != 5) {
        std::fprintf(stderr, "usage: compute_proof SEED N PRODUCTS FIRST\n");
        return 2;
    }
    u64 seed = std::strtoull(argv[1], nullptr, 10);
    u32 n = (u32)std::strtoul(argv[2], nullptr, 10);
    u32 products = (u32)std::strtoul(argv[3], nullptr, 10);
    u64 first = std::strtoull(argv[4], nullptr, 10);
    u64 len = (u64)n * n;
    std::vector<signed char> a(len), bt(len);
    std::vector<int> c(len);
    std::vector<u8> tree(32 * tree_nodes(n)), roots(32 * tree_nodes(products));
    u64 product_key = stream_key(seed, 2);
    for (u32 slot = 0; slot < products; ++slot) {
        u64 product_seed = word(product_key, first + slot);
        for (u64 j = 0; j < (len + 7) / 8; ++j) {
            fill_word(stream_key(product_seed, 0), j, n, 0, a.data());
            fill_word(stream_key(product_seed, 1), j, n, 1, bt.data());
        }
        for (u64 i = 0; i < n; ++i) {
            for (u64 j = 0; j < n; ++j) {
                int s = 0;
                for (u64 k = 0; k < n; ++k) s += (int)a[i * n + k] * (int)bt[j * n + k];
                c[i * n + j] = s;
            }
        }
        for (u64 r = 0; r < n; ++r) row_digest(&c[r * n], n, &tree[32 * r]);
        u64 root = reduce(tree, n);
        for (int b = 0; b < 32; ++b) roots[32 * slot + b] = tree[32 * root + b];
    }
    u64 root = reduce(roots, products);
    for (int b = 0; b < 32; ++b) std::printf("%02x", roots[32 * root + b]);
    std::printf("\n");
    return 0;
}
