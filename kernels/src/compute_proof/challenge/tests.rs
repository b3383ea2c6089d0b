use super::*;
use crate::compute_proof::{commit, cpu};

fn fragment() -> Fragment {
    Fragment {
        seed: 42,
        n: 48,
        first: 3,
        count: 3,
    }
}

/// An honest worker's commitment, and the products it computed.
fn honest(f: &Fragment) -> (Commitment, Vec<Vec<i32>>) {
    let n = f.n as usize;
    let mut cs = Vec::new();
    let trees = (0..f.count)
        .map(|p| {
            let (a, b) = inputs(f.product_seed(p), n).unwrap();
            let c = cpu::matmul(&a, &b, n).unwrap();
            let t = commit(&c, n).unwrap();
            cs.push(c);
            t
        })
        .collect();
    (Commitment::new(*f, trees), cs)
}

/// A worker that commits to products whose `bad` rows (of product 0) are wrong.
fn corrupted(f: &Fragment, bad: &[usize]) -> Commitment {
    let n = f.n as usize;
    let (_, mut cs) = honest(f);
    for &i in bad {
        cs[0][i * n + 7] += 1;
    }
    Commitment::new(*f, cs.iter().map(|c| commit(c, n).unwrap()).collect())
}

/// Answers straight from the committed (possibly wrong) products, as a cheater would.
fn answers_from(c: &Commitment, products: &[Vec<i32>], rows: &[RowRef]) -> Vec<RowAnswer> {
    let n = c.fragment.n as usize;
    rows.iter()
        .map(|at| RowAnswer {
            at: *at,
            values: products[at.product as usize][at.row as usize * n..][..n].to_vec(),
            row_proof: c.products[at.product as usize]
                .prove(at.row as usize)
                .unwrap(),
            product_proof: c.tree.prove(at.product as usize).unwrap(),
        })
        .collect()
}

#[test]
fn an_honest_fragment_answers_every_challenge() {
    let f = fragment();
    let (c, products) = honest(&f);
    // The digest the CPU path reports is the commitment's root.
    let kind = crate::fragment::FragmentKind::ComputeProof {
        dimension: f.n,
        products: 10,
        seed: f.seed,
    };
    let out = crate::fragment::execute_range(&kind, 3..6).unwrap();
    assert_eq!(out.digest, crate::fragment::hex(&c.root()));
    for draw in 0..20 {
        let rows = draw_rows(draw, &f, 12);
        let answers = c.answer(&rows).unwrap();
        assert_eq!(answers, answers_from(&c, &products, &rows));
        assert_eq!(check(&f, &c.root(), &rows, &answers, draw ^ 99), Ok(()));
    }
}

#[test]
fn a_committed_wrong_row_fails_freivalds_when_challenged() {
    let f = fragment();
    let n = f.n as usize;
    let c = corrupted(&f, &[5]);
    let (_, mut cs) = honest(&f);
    cs[0][5 * n + 7] += 1;
    let bad = RowRef { product: 0, row: 5 };
    let good = RowRef { product: 1, row: 5 };
    for secret in 0..50 {
        let a = answers_from(&c, &cs, &[bad, good]);
        assert_eq!(
            check(&f, &c.root(), &[bad, good], &a, secret),
            Err(Failure::WrongRow(bad))
        );
    }
    // Unchallenged, the wrong row goes unseen: sampling is the bound (see the policy).
    let a = answers_from(&c, &cs, &[good]);
    assert_eq!(check(&f, &c.root(), &[good], &a, 1), Ok(()));
}

#[test]
fn a_true_row_that_was_not_committed_fails() {
    let f = fragment();
    let c = corrupted(&f, &[5]);
    let at = RowRef { product: 0, row: 5 };
    // The cheater recomputes the challenged row honestly, but committed another one.
    let a = c.answer(&[at]).unwrap();
    assert_eq!(
        check(&f, &c.root(), &[at], &a, 1),
        Err(Failure::NotCommitted(at))
    );
}

#[test]
fn a_random_or_copied_root_cannot_be_answered() {
    let f = fragment();
    let (honest_c, _) = honest(&f);
    let rows = draw_rows(7, &f, 8);
    let a = honest_c.answer(&rows).unwrap();
    // A random digest: the true rows do not prove into it.
    assert!(matches!(
        check(&f, &[0xab; 32], &rows, &a, 1),
        Err(Failure::NotCommitted(_))
    ));
    // Another fragment's true commitment and answers: its rows are not this fragment's.
    let other = Fragment { first: 6, ..f };
    let (copied, _) = honest(&other);
    let a = copied.answer(&rows).unwrap();
    assert!(matches!(
        check(&f, &copied.root(), &rows, &a, 1),
        Err(Failure::WrongRow(_))
    ));
}

#[test]
fn missing_extra_and_misshapen_answers_fail() {
    let f = fragment();
    let (c, _) = honest(&f);
    let rows = draw_rows(3, &f, 4);
    let mut a = c.answer(&rows).unwrap();
    assert!(matches!(
        check(&f, &c.root(), &rows, &a[1..], 1),
        Err(Failure::Unanswered(_))
    ));
    let extra = c
        .answer(&[RowRef {
            product: 2,
            row: 47,
        }])
        .unwrap();
    let mut more = a.clone();
    more.extend(extra);
    assert!(matches!(
        check(&f, &c.root(), &rows, &more, 1),
        Err(Failure::Unchallenged(_))
    ));
    let mut twice = a.clone();
    twice.push(a[0].clone());
    assert!(matches!(
        check(&f, &c.root(), &rows, &twice, 1),
        Err(Failure::Unanswered(_))
    ));
    a[0].values.pop();
    assert!(matches!(
        check(&f, &c.root(), &rows, &a, 1),
        Err(Failure::Length { .. })
    ));
    assert!(c.answer(&[RowRef { product: 3, row: 0 }]).is_err());
}

#[test]
fn garbage_proofs_are_refusals_not_panics() {
    let f = fragment();
    let (c, _) = honest(&f);
    let rows = draw_rows(5, &f, 3);
    let honest_answers = c.answer(&rows).unwrap();
    for cut in 0..6 {
        let mut a = honest_answers.clone();
        a[0].row_proof.truncate(cut);
        a[1].product_proof.push([cut as u8; 32]);
        assert!(check(&f, &c.root(), &rows, &a, 1).is_err());
    }
    let out_of_range = RowRef {
        product: 9,
        row: 1000,
    };
    let mut a = honest_answers[..1].to_vec();
    a[0].at = out_of_range;
    assert!(check(&f, &c.root(), &[out_of_range], &a, 1).is_err());
    let zero = Fragment { n: 0, ..f };
    assert!(matches!(
        check(&zero, &c.root(), &[], &[], 1),
        Err(Failure::Shape(_))
    ));
}

#[test]
fn drawn_rows_stay_inside_the_fragment_and_cover_it() {
    let f = Fragment {
        n: 4,
        count: 2,
        ..fragment()
    };
    let rows = draw_rows(11, &f, 400);
    assert_eq!(rows.len(), 8, "400 draws over 8 rows hit them all");
    assert!(rows.iter().all(|r| r.product < 2 && r.row < 4));
    assert_ne!(draw_rows(1, &fragment(), 8), draw_rows(2, &fragment(), 8));
}
