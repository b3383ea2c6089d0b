//! The CPU reference product `C = A·B` (int8 × int8 → int32, row-major, `n×n`), bit-
//! identical to any other correct implementation because integer sums are exact.
//!
//! Safe Rust the compiler vectorizes: `B` is transposed and both operands are widened
//! to i16 once, so each `C` entry is a dot product of contiguous i16 runs summed in i32
//! (which x86 lowers to `pmaddwd`, and other targets to their widening multiply-adds).
//! Blocking keeps a `COL_BLOCK × DEPTH_BLOCK` panel of `Bᵀ` in L1/L2 while every row of
//! `A` streams past it; four columns per pass reuse each loaded `A` element four times.

use super::{ShapeError, check};
use std::ops::Range;
use std::sync::{Mutex, PoisonError};

/// Columns of `C` (rows of `Bᵀ`) per panel.
const COL_BLOCK: usize = 32;
/// Depth (`k`) per panel: 32 × 512 i16 = 32 KiB.
const DEPTH_BLOCK: usize = 512;

/// `C = A·B` on the calling thread.
pub fn matmul(a: &[i8], b: &[i8], n: usize) -> Result<Vec<i32>, ShapeError> {
    matmul_threads(a, b, n, 1)
}

/// `C = A·B` with rows of `C` split over up to `threads` threads (0 counts as 1).
pub fn matmul_threads(
    a: &[i8],
    b: &[i8],
    n: usize,
    threads: usize,
) -> Result<Vec<i32>, ShapeError> {
    let p = Packed::new(a, b, n)?;
    let mut c = vec![0i32; n * n];
    let threads = threads.clamp(1, n);
    let rows_per = n.div_ceil(threads);
    let bands: Vec<(Range<usize>, &mut [i32])> = c
        .chunks_mut(rows_per * n)
        .enumerate()
        .map(|(band, out)| (band * rows_per..(band * rows_per + rows_per).min(n), out))
        .collect();
    let queue = Mutex::new(bands);
    let work = || {
        loop {
            let next = queue.lock().unwrap_or_else(PoisonError::into_inner).pop();
            let Some((rows, out)) = next else { break };
            p.rows_into(rows, out);
        }
    };
    std::thread::scope(|s| {
        for _ in 1..threads {
            // A thread the OS refuses to start costs only speed: the calling thread
            // drains the same queue.
            let _ = std::thread::Builder::new().spawn_scoped(s, work);
        }
        work();
    });
    Ok(c)
}

/// The textbook triple loop, for tests and for checking other implementations.
pub fn matmul_naive(a: &[i8], b: &[i8], n: usize) -> Result<Vec<i32>, ShapeError> {
    check("a", a, n)?;
    check("b", b, n)?;
    let mut c = vec![0i32; n * n];
    for i in 0..n {
        for j in 0..n {
            c[i * n + j] = (0..n)
                .map(|k| i32::from(a[i * n + k]) * i32::from(b[k * n + j]))
                .sum();
        }
    }
    Ok(c)
}

/// Operands in the layout the blocked loop reads: `A` and `Bᵀ`, widened to i16.
struct Packed {
    a: LineAligned,
    bt: LineAligned,
    n: usize,
}

impl Packed {
    fn new(a: &[i8], b: &[i8], n: usize) -> Result<Self, ShapeError> {
        check("a", a, n)?;
        check("b", b, n)?;
        let mut wide_a = LineAligned::zeroed(n * n);
        for (w, v) in wide_a.as_mut().iter_mut().zip(a) {
            *w = i16::from(*v);
        }
        let mut bt = LineAligned::zeroed(n * n);
        let t = bt.as_mut();
        for (k, row) in b.chunks_exact(n).enumerate() {
            for (j, v) in row.iter().enumerate() {
                t[j * n + k] = i16::from(*v);
            }
        }
        Ok(Self { a: wide_a, bt, n })
    }

    /// Computes rows `rows` of `C` into `out` (`rows.len() × n`, zeroed).
    fn rows_into(&self, rows: Range<usize>, out: &mut [i32]) {
        let n = self.n;
        for j0 in (0..n).step_by(COL_BLOCK) {
            let j1 = (j0 + COL_BLOCK).min(n);
            for k0 in (0..n).step_by(DEPTH_BLOCK) {
                let k1 = (k0 + DEPTH_BLOCK).min(n);
                let (a, bt) = (self.a.as_ref(), self.bt.as_ref());
                let col = |j: usize| &bt[j * n + k0..j * n + k1];
                for (i, c_row) in rows.clone().zip(out.chunks_exact_mut(n)) {
                    let a_run = &a[i * n + k0..i * n + k1];
                    let mut j = j0;
                    while j + 4 <= j1 {
                        let s = dot4(a_run, [col(j), col(j + 1), col(j + 2), col(j + 3)]);
                        for (c, v) in c_row[j..j + 4].iter_mut().zip(s) {
                            *c += v;
                        }
                        j += 4;
                    }
                    for (c, j) in c_row[j..j1].iter_mut().zip(j..) {
                        *c += dot(a_run, col(j));
                    }
                }
            }
        }
    }
}

/// An i16 buffer whose first element starts a 64-byte cache line. Where vector loads
/// split cache lines changes the product's speed by 10-20%, and the allocator's
/// alignment differs between processes; aligning makes benchmarks repeatable.
struct LineAligned {
    buf: Vec<i16>,
    start: usize,
    len: usize,
}

impl LineAligned {
    const LINE: usize = 64;

    fn zeroed(len: usize) -> Self {
        let buf = vec![0i16; len + Self::LINE / 2];
        // Only the address's value is read, to pick an offset; nothing is dereferenced.
        let misalign = buf.as_ptr() as usize % Self::LINE;
        let start = (Self::LINE - misalign) % Self::LINE / 2;
        Self { buf, start, len }
    }

    fn as_ref(&self) -> &[i16] {
        &self.buf[self.start..self.start + self.len]
    }

    fn as_mut(&mut self) -> &mut [i16] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

fn dot(a: &[i16], b: &[i16]) -> i32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| i32::from(*x) * i32::from(*y))
        .sum()
}

/// Four dot products sharing `a`; slicing to `a.len()` up front lets the compiler drop
/// bounds checks and vectorize the loop.
#[inline(always)]
fn dot4(a: &[i16], b: [&[i16]; 4]) -> [i32; 4] {
    let len = a.len();
    let [b0, b1, b2, b3] = b.map(|r| &r[..len.min(r.len())]);
    let mut s = [0i32; 4];
    for ((((x, y0), y1), y2), y3) in a.iter().zip(b0).zip(b1).zip(b2).zip(b3) {
        let x = i32::from(*x);
        s[0] += x * i32::from(*y0);
        s[1] += x * i32::from(*y1);
        s[2] += x * i32::from(*y2);
        s[3] += x * i32::from(*y3);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute_proof::inputs;

    #[test]
    fn blocked_product_equals_naive_across_block_boundaries() {
        // 1 and 3 are below a 4-column pass; 33 and 45 straddle COL_BLOCK; 530 straddles
        // DEPTH_BLOCK.
        for n in [1, 3, 4, 33, 45, 64, 530] {
            let (a, b) = inputs(n as u64, n).unwrap();
            let want = matmul_naive(&a, &b, n).unwrap();
            assert_eq!(matmul(&a, &b, n).unwrap(), want, "n={n}");
            assert_eq!(matmul_threads(&a, &b, n, 3).unwrap(), want, "n={n} threads");
        }
    }

    #[test]
    fn extreme_values_accumulate_without_overflow() {
        let n = 600;
        let a = vec![i8::MIN; n * n];
        let c = matmul_threads(&a, &a, n, 2).unwrap();
        assert!(c.iter().all(|v| *v == 128 * 128 * n as i32));
    }

    #[test]
    fn more_threads_than_rows_and_zero_threads_are_fine() {
        let (a, b) = inputs(5, 5).unwrap();
        let want = matmul_naive(&a, &b, 5).unwrap();
        assert_eq!(matmul_threads(&a, &b, 5, 64).unwrap(), want);
        assert_eq!(matmul_threads(&a, &b, 5, 0).unwrap(), want);
    }

    #[test]
    fn mismatched_operands_are_errors() {
        assert!(matches!(
            matmul(&[0; 4], &[0; 3], 2),
            Err(ShapeError::Length { operand: "b", .. })
        ));
        assert_eq!(matmul(&[], &[], 0), Err(ShapeError::Size(0)));
    }
}
